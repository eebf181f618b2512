"""Run the quantize CLI in its own process (TensorFlow stays out of the pytest process)."""

import subprocess
import sys


def quantize(*args: str, check: bool = False) -> subprocess.CompletedProcess:
    """Run the quantize CLI in its own process, as a user or a CI job would."""
    result = subprocess.run([sys.executable, "-m", "quantize", *map(str, args)], capture_output=True, text=True, timeout=600)
    if check and result.returncode != 0:
        raise AssertionError(f"quantize {' '.join(map(str, args))} exited {result.returncode}:\n{result.stderr}")
    return result
