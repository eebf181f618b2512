import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))


def quantize(*args: str, check: bool = False) -> subprocess.CompletedProcess:
    """Run the quantize CLI in its own process, as a user or a CI job would."""
    result = subprocess.run([sys.executable, "-m", "quantize", *map(str, args)], capture_output=True, text=True, timeout=600)
    if check and result.returncode != 0:
        raise AssertionError(f"quantize {' '.join(map(str, args))} exited {result.returncode}:\n{result.stderr}")
    return result


@pytest.fixture(scope="session")
def tiny(tmp_path_factory) -> Path:
    """A synthetic FER-format CSV and small trained Keras models (see make_tiny_models.py)."""
    # find_spec, not importorskip: TensorFlow must not be imported into the pytest process.
    if importlib.util.find_spec("tensorflow") is None:
        pytest.skip("the quantize extra (TensorFlow) is not installed")
    out = tmp_path_factory.mktemp("tiny")
    subprocess.run([sys.executable, str(HERE / "make_tiny_models.py"), str(out)], check=True, cwd=HERE, timeout=600)
    return out
