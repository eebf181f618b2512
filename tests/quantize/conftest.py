import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent


@pytest.fixture(scope="session")
def tiny(tmp_path_factory) -> Path:
    """A synthetic FER-format CSV and small trained Keras models (see make_tiny_models.py)."""
    # find_spec, not importorskip: TensorFlow must not be imported into the pytest process.
    if importlib.util.find_spec("tensorflow") is None:
        pytest.skip("the quantize extra (TensorFlow) is not installed")
    out = tmp_path_factory.mktemp("tiny")
    subprocess.run([sys.executable, str(HERE / "make_tiny_models.py"), str(out)], check=True, cwd=HERE, timeout=600)
    return out
