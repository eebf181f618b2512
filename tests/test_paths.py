"""Configured files the daemon cannot read: one reason in words (edged.paths), and, run as another user the way the
systemd service runs, exit 78 from `edged run` and a FAIL line from `edged check` naming the variable, never a traceback.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from media import ASTRONAUT, SAMPLE_CLIP, require_model

from edged.cli import EXIT_CONFIG
from edged.errors import ConfigError
from edged.paths import readable_file, why_unreadable


def test_a_readable_file_passes_and_each_other_kind_says_why(tmp_path):
    assert why_unreadable(ASTRONAUT) is None
    assert readable_file(str(ASTRONAUT), "EDGED_X") == ASTRONAUT
    assert why_unreadable(tmp_path / "absent.mp4") == "no such file"
    assert why_unreadable(tmp_path) == "is a directory, not a file"
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert why_unreadable(blocker / "clip.mp4") == "no such file (a part of the path is not a directory)"
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    assert why_unreadable(fifo) == "is not a regular file"  # and it did not block opening it
    with pytest.raises(ConfigError, match=rf"^EDGED_CAMERA__SOURCE={tmp_path}: is a directory, not a file$"):
        readable_file(tmp_path, "EDGED_CAMERA__SOURCE")


def test_paths_the_unit_hides_say_so():
    reason = why_unreadable(Path("/home/edged-test-nobody/clip.mp4"))
    assert reason is not None and "no such file" in reason and "cannot see /home, /root or /run/user" in reason
    assert "ProtectHome" not in (why_unreadable(Path("/srv/edged-test-absent.mp4")) or "")


# Root without the capabilities that bypass file permissions: files of another user then refuse it exactly as they
# refuse the service's dynamic user (the interpreter under /root stays reachable, which another user's would not be).
NO_DAC = ["--bounding-set=-dac_override,-dac_read_search", "--inh-caps=-dac_override,-dac_read_search"]
OTHER_UID = 65534  # nobody


def _setpriv() -> str:
    if os.geteuid() != 0:
        pytest.skip("taking away file-permission capabilities (as the service lacks them) needs root")
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("setpriv is absent (apt-get install util-linux)")
    return setpriv


@pytest.fixture(scope="module")
def unreadable():
    """0600 copies owned by another user of every kind of file edged is configured with, in a directory anyone may
    search, plus a state directory only that user may enter; removed afterwards."""
    model = require_model()
    folder = Path(tempfile.mkdtemp(prefix="edged-unreadable-"))
    folder.chmod(0o755)
    import cv2

    cascade = Path(cv2.data.haarcascades) / "haarcascade_frontalface_default.xml"
    files = {"model": folder / "m.tflite", "cascade": folder / "c.xml", "video": folder / "v.mp4",
             "pem": folder / "ca.pem", "state": folder / "state"}
    for source, target in ((model, files["model"]), (model.with_suffix(".json"), folder / "m.json"),
                           (cascade, files["cascade"]), (SAMPLE_CLIP, files["video"]), (ASTRONAUT, files["pem"])):
        shutil.copy(source, target)
        target.chmod(0o600)
        os.chown(target, OTHER_UID, OTHER_UID)
    files["state"].mkdir(mode=0o700)
    os.chown(files["state"], OTHER_UID, OTHER_UID)
    files["credentials"] = folder / "credentials"  # as systemd's LoadCredential= lays it out, for another user
    files["credentials"].mkdir(mode=0o755)
    (files["credentials"] / "mqtt_password").write_text("s3cret")
    (files["credentials"] / "mqtt_password").chmod(0o600)
    os.chown(files["credentials"] / "mqtt_password", OTHER_UID, OTHER_UID)
    yield files
    shutil.rmtree(folder)


# (variable at fault, the variables that set it up); values name a file of `unreadable`
CASES = [
    ("EDGED_MODEL__PATH", {"EDGED_MODEL__PATH": "model"}),
    ("EDGED_DETECTOR__CASCADE", {"EDGED_DETECTOR__CASCADE": "cascade"}),
    ("EDGED_CAMERA__SOURCE", {"EDGED_CAMERA__SOURCE": "video"}),
    ("EDGED_MQTT__CA_FILE", {"EDGED_MQTT__TLS": "true", "EDGED_MQTT__CA_FILE": "pem"}),
    ("EDGED_MQTT__CERT_FILE", {"EDGED_MQTT__TLS": "true", "EDGED_MQTT__CERT_FILE": "pem", "EDGED_MQTT__KEY_FILE": "pem"}),
    ("EDGED_STATE_DIR", {"EDGED_STATE_DIR": "state"}),
    ("$CREDENTIALS_DIRECTORY/mqtt_password", {"CREDENTIALS_DIRECTORY": "credentials", "EDGED_MQTT__USERNAME": "kiosk"}),
]


def _unprivileged(command: str, env: dict[str, str], state: Path) -> subprocess.CompletedProcess:
    setpriv = _setpriv()
    clean = {k: v for k, v in os.environ.items() if not k.upper().startswith("EDGED_")}
    base = {"EDGED_MODEL__PATH": str(require_model()), "EDGED_CAMERA__SOURCE": str(SAMPLE_CLIP),
            "EDGED_CAMERA__REALTIME": "false", "EDGED_MQTT__HOST": "127.0.0.1", "EDGED_MQTT__PORT": "9",
            "EDGED_STATE_DIR": str(state)}
    args = [setpriv, *NO_DAC, sys.executable, "-m", "edged", command, *(["--skip-broker"] if command == "check" else [])]
    return subprocess.run(args, env={**clean, **base, **env}, cwd="/", capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(("variable", "env"), CASES, ids=[c[0] for c in CASES])
def test_run_exits_78_naming_the_variable_of_a_file_it_cannot_read(unreadable, tmp_path, variable, env):
    result = _unprivileged("run", {name: str(unreadable.get(value, value)) for name, value in env.items()},
                           tmp_path / "state")
    lines = [line for line in result.stderr.splitlines() if line.startswith("edged:")]
    assert result.returncode == EXIT_CONFIG, result.stderr
    assert "Traceback" not in result.stderr and len(lines) == 1, result.stderr
    assert f"{variable}=" in lines[0] and ("permission denied" in lines[0] or "not writable" in lines[0]), lines[0]


@pytest.mark.parametrize(("variable", "env"), CASES, ids=[c[0] for c in CASES])
def test_check_exits_78_naming_the_variable_of_a_file_it_cannot_read(unreadable, tmp_path, variable, env):
    result = _unprivileged("check", {name: str(unreadable.get(value, value)) for name, value in env.items()},
                           tmp_path / "state")
    failed = [line for line in result.stdout.splitlines() if line.startswith("FAIL")]
    assert result.returncode == EXIT_CONFIG, result.stdout + result.stderr  # as `edged run`: the configuration
    assert "Traceback" not in result.stderr and len(failed) == 1, result.stdout + result.stderr
    assert f"{variable}=" in failed[0] and ("permission denied" in failed[0] or "not writable" in failed[0]), failed[0]
