"""The `edged` command line: detect, config, exit statuses, and no TensorFlow in the daemon."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest
from media import ASTRONAUT, COFFEE, ROOT, SAMPLE_CLIP, require_model
from mosquitto import USERS, Subscriber

from edged.cli import EXIT_CONFIG, EXIT_FAILED, EXIT_OK, main


@pytest.fixture
def env(monkeypatch):
    """A clean EDGED_* environment; returns monkeypatch to set variables on."""
    for name in list(os.environ):
        if name.upper().startswith("EDGED_"):
            monkeypatch.delenv(name)
    return monkeypatch


def _edged(*args: str, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.upper().startswith("EDGED_")}
    return subprocess.run([sys.executable, "-m", "edged", *args], env={**clean, **env}, cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def test_detect_prints_one_json_line_per_image(env, capsys, tmp_path):
    env.setenv("EDGED_MODEL__PATH", str(require_model()))
    unreadable = tmp_path / "notes.jpg"
    unreadable.write_text("not a picture")
    status = main(["detect", str(ASTRONAUT), str(COFFEE), str(unreadable)])
    out = capsys.readouterr()
    astronaut, coffee, broken = (json.loads(line) for line in out.out.splitlines())
    assert status == EXIT_FAILED  # one image could not be read
    assert len(astronaut["faces"]) == 1 and (astronaut["width"], astronaut["height"]) == (512, 512)
    face = astronaut["faces"][0]
    assert face["emotion"] == "happy" and len(face["box"]) == 4 and set(face["scores"]) >= {"happy", "neutral"}
    assert coffee["faces"] == []
    assert broken == {"image": str(unreadable), "error": "not an image OpenCV can read"}
    assert "notes.jpg" in out.err


def test_config_lists_variables_with_secrets_masked(env, capsys):
    env.setenv("EDGED_MQTT__USERNAME", "kiosk")
    env.setenv("EDGED_MQTT_PASSWORD", "hunter2")
    env.setenv("EDGED_CAMERA__SOURCE", str(SAMPLE_CLIP))
    assert main(["config"]) == EXIT_OK
    out = capsys.readouterr().out
    assert "hunter2" not in out
    rows = {line.split()[0]: line for line in out.splitlines()[1:]}
    assert str(SAMPLE_CLIP) in rows["EDGED_CAMERA__SOURCE"] and "****" in rows["EDGED_MQTT_PASSWORD"]
    assert "EDGED_TRACKER__SMOOTHING" in rows
    # What an empty path stands for: the files `edged run` would load, so an operator sees where they come from.
    from edged.models import default_model

    assert rows["EDGED_MODEL__PATH"].split()[1:3] == [str(default_model()), "(bundled)"]
    assert default_model().is_file() and default_model().parent.name == "models"
    assert "haarcascade_frontalface_default.xml (found)" in rows["EDGED_DETECTOR__CASCADE"]


def test_bad_variable_exits_78_naming_it():
    result = _edged("config", EDGED_MQTT__PORT="eighteen")
    assert result.returncode == EXIT_CONFIG
    assert "EDGED_MQTT__PORT" in result.stderr


def test_missing_model_is_a_configuration_error(env, capsys, tmp_path):
    env.setenv("EDGED_MODEL__PATH", str(tmp_path / "absent.tflite"))
    assert main(["detect", str(ASTRONAUT)]) == EXIT_CONFIG
    assert "absent.tflite" in capsys.readouterr().err


def test_run_plays_a_file_and_exits_0_when_the_broker_is_away():
    # The broker is not needed to finish a file: events queue in paho and the run ends cleanly.
    result = _edged("run", EDGED_MODEL__PATH=str(require_model()), EDGED_CAMERA__SOURCE=str(SAMPLE_CLIP),
                    EDGED_CAMERA__REALTIME="false", EDGED_MQTT__PORT="1", EDGED_LOG_LEVEL="WARNING")
    assert result.returncode == EXIT_OK, result.stderr


def test_run_publishes_the_sample_clip_to_a_real_broker(broker):
    model = require_model()
    subscriber = Subscriber(broker.port, "edged/clip/#")
    try:
        result = _edged("run", EDGED_MODEL__PATH=str(model), EDGED_CAMERA__SOURCE=str(SAMPLE_CLIP),
                        EDGED_CAMERA__REALTIME="false", EDGED_MQTT__HOST="127.0.0.1", EDGED_MQTT__PORT=str(broker.port),
                        EDGED_DEVICE_ID="clip")
        assert result.returncode == EXIT_OK, result.stderr
        subscriber.wait_for(lambda ms: any(m.topic == "edged/clip/status" and m.text == "offline" for m in ms),
                            what="status offline")
        events = [json.loads(m.text) for m in subscriber.on("edged/clip/events")]
        stats = [json.loads(m.text) for m in subscriber.on("edged/clip/stats")]
    finally:
        subscriber.close()
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    arrivals = [e["type"] for e in events if e["type"] != "emotion_changed"]
    assert arrivals == ["face_appeared", "face_left", "face_appeared", "face_left"]
    assert next(e["emotion"] for e in events if e["type"] == "face_left") == "happy"  # the astronaut
    assert stats and stats[-1]["frames"] == 180 and stats[-1]["faces_seen"] == 2


def test_sigterm_stops_the_daemon_cleanly(broker):
    model = require_model()
    subscriber = Subscriber(broker.port, "edged/term/status")
    clean = {k: v for k, v in os.environ.items() if not k.upper().startswith("EDGED_")}
    env = {**clean, "EDGED_MODEL__PATH": str(model), "EDGED_CAMERA__SOURCE": str(SAMPLE_CLIP),
           "EDGED_MQTT__HOST": "127.0.0.1", "EDGED_MQTT__PORT": str(broker.port), "EDGED_DEVICE_ID": "term"}
    daemon = subprocess.Popen([sys.executable, "-m", "edged", "run"], env=env, cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        subscriber.wait_for(lambda ms: any(m.text == "online" for m in ms), timeout=30, what="online")
        daemon.send_signal(signal.SIGTERM)  # the clip plays in real time for 12 s: this lands mid-clip
        _, stderr = daemon.communicate(timeout=15)
        subscriber.wait_for(lambda ms: ms[-1].text == "offline", what="offline after SIGTERM")
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.communicate()
        subscriber.close()
    assert daemon.returncode == EXIT_OK, stderr


def test_check_passes_on_a_ready_installation(broker):
    result = _edged("check", EDGED_MODEL__PATH=str(require_model()), EDGED_CAMERA__SOURCE=str(SAMPLE_CLIP),
                    EDGED_MQTT__HOST="127.0.0.1", EDGED_MQTT__PORT=str(broker.port))
    lines = result.stdout.splitlines()
    assert result.returncode == EXIT_OK, result.stdout + result.stderr
    assert [line.split()[:2] for line in lines] == [["PASS", item] for item in
                                                     ("config", "cascade", "model", "camera", "outbox", "broker")]


def test_detect_and_check_print_only_their_own_lines(tmp_path):
    """No runtime banner and no OpenCV or FFmpeg warnings unless asked for (-v); a truncated JPEG is a warning and a
    failure, not a confident emotion; a directory says so."""
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(ASTRONAUT.read_bytes()[:20_000])  # the top of the picture, the face included
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"not a video " * 100)
    model = str(require_model())

    good = _edged("detect", str(ASTRONAUT), EDGED_MODEL__PATH=model)
    assert good.returncode == EXIT_OK and good.stderr == "", good.stderr
    damaged = _edged("detect", str(truncated), str(tmp_path), EDGED_MODEL__PATH=model)
    part, folder = (json.loads(line) for line in damaged.stdout.splitlines())
    assert damaged.returncode == EXIT_FAILED
    assert part["faces"] == [] and "decoded only in part (Premature end of JPEG file)" in part["warning"]
    assert folder == {"image": str(tmp_path), "error": "is a directory, not a file"}
    assert damaged.stderr.splitlines() == [f"edged: {truncated}: {part['warning']}",
                                           f"edged: {tmp_path}: is a directory, not a file"]

    check = _edged("check", "--skip-broker", EDGED_MODEL__PATH=model, EDGED_CAMERA__SOURCE=str(junk))
    assert check.returncode == EXIT_CONFIG and check.stderr == "", check.stderr  # a video file: configuration
    assert "FAIL  camera   video file" in check.stdout
    verbose = _edged("-v", "check", "--skip-broker", EDGED_MODEL__PATH=model, EDGED_CAMERA__SOURCE=str(junk))
    assert "XNNPACK delegate" in verbose.stderr and "[ WARN" in verbose.stderr  # asked for: all of it


def test_check_fails_on_refused_credentials(auth_broker):
    result = _edged("check", "--timeout", "5", EDGED_MODEL__PATH=str(require_model()),
                    EDGED_CAMERA__SOURCE=str(SAMPLE_CLIP), EDGED_MQTT__HOST="127.0.0.1",
                    EDGED_MQTT__PORT=str(auth_broker.port), EDGED_MQTT__USERNAME="edged",
                    EDGED_MQTT_PASSWORD=USERS["edged"] + "-wrong")
    broker_line = result.stdout.splitlines()[-1]
    assert result.returncode == EXIT_FAILED
    assert broker_line.startswith("FAIL  broker") and "EDGED_MQTT__USERNAME" in broker_line


def test_help_teaches_with_examples():
    result = _edged("--help")
    assert result.returncode == 0 and "examples:" in result.stdout and "EDGED_CAMERA__SOURCE" in result.stdout


def test_the_daemon_never_imports_tensorflow():
    code = "import edged.cli, edged.pipeline, edged.classifier; import sys; assert 'tensorflow' not in sys.modules"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
