"""The package as a user installs it: the sdist and the wheel built from the tracked files carry the model and its
sidecar, and `pip install` of the wheel, and of the source tree (`pip install .`), into fresh venvs outside the
checkout give an `edged` that finds its model from any directory: `edged detect` on a photograph, `edged check` and
`edged run` on the sample clip against a real Mosquitto.

The fresh venvs take edged's dependencies from the test venv (a path in a .pth file), so this runs offline in
seconds; pip's own resolution of numpy, OpenCV and the TFLite runtime, per Python version, is scripts/pythons.sh.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import zipfile
from pathlib import Path

import pytest
from media import ASTRONAUT, ROOT, SAMPLE_CLIP
from mosquitto import Subscriber

pytestmark = pytest.mark.slow
MODEL_FILES = {"edged/models/emotions-int8.tflite", "edged/models/emotions-int8.json",
               # the dashboard's pages and the vendored chart library with its licence
               "edged/dashboard/templates/overview.html", "edged/dashboard/static/dashboard.js",
               "edged/dashboard/static/uplot/uPlot.iife.min.js", "edged/dashboard/static/uplot/LICENSE"}


def _run(args: list, cwd: Path, timeout: float = 300, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.upper().startswith(("EDGED_", "PYTHON", "VIRTUAL_ENV"))}
    result = subprocess.run([str(a) for a in args], cwd=cwd, env={**clean, **env}, capture_output=True, text=True,
                            timeout=timeout)
    return result


def _tracked_copy(target: Path) -> Path:
    """The checkout's tracked (and new, not ignored) files, as a fresh clone has them: nothing built lies around."""
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("git or the checkout's .git is absent: cannot list the tracked files to build from")
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            capture_output=True, check=True, timeout=60).stdout.decode().split("\0")
    for name in filter(None, listed):
        source = ROOT / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    return target


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    return _tracked_copy(tmp_path_factory.mktemp("clone"))


@pytest.fixture(scope="module")
def dist(source, tmp_path_factory) -> Path:
    """sdist and wheel from `python -m build` (the wheel is built from the sdist, as pip does from PyPI)."""
    out = tmp_path_factory.mktemp("dist")
    result = _run([sys.executable, "-m", "build", "--outdir", out, source], cwd=source)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return out


def _fresh_venv(where: Path) -> Path:
    """A new venv whose only path to the test venv is its site-packages for dependencies (no edged there: the test
    venv's editable edged is hooked in by a .pth file that a path entry does not run)."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", where], check=True, timeout=120)
    site = next((where / "lib").glob("python3*/site-packages"))
    (site / "test-venv-deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return where


def _pip_install(venv: Path, *what: Path) -> None:
    # The test venv's pip, into the fresh venv: no index, no dependencies (they are the test venv's).
    result = _run([sys.executable, "-m", "pip", "--python", venv / "bin" / "python", "install", "--no-deps", *what],
                  cwd=venv, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


def test_sdist_and_wheel_carry_the_model_and_its_sidecar(dist):
    (wheel,) = dist.glob("edged-*.whl")
    (sdist,) = dist.glob("edged-*.tar.gz")
    with zipfile.ZipFile(wheel) as archive:
        assert set(archive.namelist()) >= MODEL_FILES
    with tarfile.open(sdist) as archive:
        top = archive.getnames()[0].split("/")[0]
        assert {f"{top}/{name}" for name in MODEL_FILES} <= set(archive.getnames())


def _detect_from_elsewhere(venv: Path, cwd: Path) -> dict:
    result = _run([venv / "bin" / "edged", "detect", ASTRONAUT], cwd=cwd)
    assert result.returncode == 0, result.stderr
    (line,) = result.stdout.splitlines()  # one JSON line, nothing else on stdout
    return json.loads(line)


def test_the_installed_wheel_works_from_another_directory(dist, broker, tmp_path):
    venv = _fresh_venv(tmp_path / "venv")
    _pip_install(venv, *dist.glob("edged-*.whl"))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    where = _run([venv / "bin" / "python", "-c", "import edged.models as m; print(m.default_model())"], cwd=elsewhere)
    assert where.stdout.strip().startswith(str(venv / "lib")), where.stdout + where.stderr  # not the checkout's

    config = _run([venv / "bin" / "edged", "config"], cwd=elsewhere)
    rows = {line.split()[0]: line.split()[1] for line in config.stdout.splitlines()[1:]}
    assert rows["EDGED_MODEL__PATH"] == where.stdout.strip(), config.stdout + config.stderr

    faces = _detect_from_elsewhere(venv, elsewhere)["faces"]
    assert len(faces) == 1 and faces[0]["emotion"] == "happy"

    env = {"EDGED_CAMERA__SOURCE": str(SAMPLE_CLIP), "EDGED_CAMERA__REALTIME": "false", "EDGED_DEVICE_ID": "wheel",
           "EDGED_MQTT__HOST": "127.0.0.1", "EDGED_MQTT__PORT": str(broker.port), "EDGED_STATE_DIR": str(tmp_path / "s")}
    check = _run([venv / "bin" / "edged", "check"], cwd=elsewhere, **env)
    assert check.returncode == 0 and check.stdout.count("PASS") == 6, check.stdout + check.stderr
    assert f"PASS  model    {where.stdout.strip()}" in check.stdout
    subscriber = Subscriber(broker.port, "edged/wheel/#")
    try:
        run = _run([venv / "bin" / "edged", "run"], cwd=elsewhere, **env)
        assert run.returncode == 0, run.stderr
        subscriber.wait_for(lambda ms: any(m.topic == "edged/wheel/status" and m.text == "offline" for m in ms),
                            what="status offline")
        kinds = [json.loads(m.text)["type"] for m in subscriber.on("edged/wheel/events")]
    finally:
        subscriber.close()
    assert kinds.count("face_appeared") == 2 and kinds.count("face_left") == 2, kinds  # the clip's two people


def test_pip_install_of_the_source_tree_works_from_another_directory(source, tmp_path):
    venv = _fresh_venv(tmp_path / "venv")
    _pip_install(venv, source)  # `pip install .`: built in an isolated environment, installed, not linked
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    faces = _detect_from_elsewhere(venv, elsewhere)["faces"]
    assert len(faces) == 1 and faces[0]["emotion"] == "happy"
