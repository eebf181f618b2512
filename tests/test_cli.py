"""The `edged` command line: detect, config, exit statuses, and no TensorFlow in the daemon."""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys

import pytest
from media import ASTRONAUT, COFFEE, ROOT, SAMPLE_CLIP, require_model
from mosquitto import USERS, Mosquitto, Subscriber

from edged.cli import EXIT_CONFIG, EXIT_FAILED, EXIT_OK, EXIT_UNAVAILABLE, main
from edged.outbox import Outbox


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


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_a_signal_stops_the_daemon_cleanly(broker, sig):
    """SIGHUP too: face_left for the faces in view, the last state (nobody), offline last, exit 0."""
    model = require_model()
    subscriber = Subscriber(broker.port, "edged/term/#")
    clean = {k: v for k, v in os.environ.items() if not k.upper().startswith("EDGED_")}
    env = {**clean, "EDGED_MODEL__PATH": str(model), "EDGED_CAMERA__SOURCE": str(SAMPLE_CLIP),
           "EDGED_MQTT__HOST": "127.0.0.1", "EDGED_MQTT__PORT": str(broker.port), "EDGED_DEVICE_ID": "term"}
    daemon = subprocess.Popen([sys.executable, "-m", "edged", "run"], env=env, cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        appeared = subscriber.wait_for(lambda ms: [json.loads(m.payload) for m in ms if m.topic.endswith("/events")],
                                       timeout=30, what="a face")[0]
        daemon.send_signal(sig)  # the clip plays in real time for 12 s: this lands mid-clip
        _, stderr = daemon.communicate(timeout=15)
        subscriber.wait_for(lambda ms: ms[-1].text == "offline", what="offline after the signal")
        events = [json.loads(m.payload) for m in subscriber.on("edged/term/events")]
        assert any(e["type"] == "face_left" and e["track"] == appeared["track"] for e in events), events
        assert json.loads(subscriber.on("edged/term/state")[-1].payload)["faces"] == []
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.communicate()
        subscriber.close()
    assert daemon.returncode == EXIT_OK, stderr
    assert stderr.count(f"INFO edged: {sig.name} received: stopping") == 1, stderr


def test_check_passes_on_a_ready_installation(broker):
    result = _edged("check", EDGED_MODEL__PATH=str(require_model()), EDGED_CAMERA__SOURCE=str(SAMPLE_CLIP),
                    EDGED_MQTT__HOST="127.0.0.1", EDGED_MQTT__PORT=str(broker.port),
                    EDGED_DEVICE_ID="kiosk-check")  # not the host name: a stock one (localhost) would add a WARN line
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
    text = " ".join(result.stdout.split())
    # what the README lists for 78, the names edged/names.py checks among them
    assert "78 configuration (bad variable, a device id, topic prefix, client id or host the broker would not take" \
           in text, text


def test_a_second_daemon_on_a_locked_state_dir_stops_before_the_camera(tmp_path):
    """The outbox's lock is taken first: with a camera source that does not exist, the second daemon names the
    other edged (69), not the camera (78), so it touched neither the model nor the camera."""
    state = tmp_path / "state"
    box = Outbox.open(state, max_messages=10, max_bytes=10_000, max_age_s=60)  # this process plays the first daemon
    try:
        result = _edged("run", EDGED_MODEL__PATH=str(require_model()), EDGED_CAMERA__SOURCE=str(tmp_path / "none.mp4"),
                        EDGED_STATE_DIR=str(state), EDGED_MQTT__HOST="127.0.0.1", EDGED_MQTT__PORT="1")
    finally:
        box.close()
    assert result.returncode == EXIT_UNAVAILABLE, result.stderr
    assert f"another edged process (pid {os.getpid()}) is using the outbox" in result.stderr
    assert "none.mp4" not in result.stderr and "model" not in result.stderr.lower(), result.stderr


def test_the_daemon_never_imports_tensorflow():
    code = "import edged.cli, edged.pipeline, edged.classifier; import sys; assert 'tensorflow' not in sys.modules"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


def _check(*args: str, **env: str) -> dict[str, list[str]]:
    """`edged check` on the sample clip: its lines by item."""
    result = _edged("check", *args, EDGED_MODEL__PATH=str(require_model()), EDGED_CAMERA__SOURCE=str(SAMPLE_CLIP),
                    EDGED_MQTT__HOST="127.0.0.1", **env)
    lines: dict[str, list[str]] = {}
    for line in result.stdout.splitlines():
        lines.setdefault(line.split()[1], []).append(line)
    lines["status"] = [str(result.returncode)]
    return lines


def test_check_fails_when_the_brokers_packet_limit_is_smaller_than_edgeds_messages(tmp_path):
    with Mosquitto(tmp_path / "small", extra=("max_packet_size 1000",)).start() as small:
        lines = _check(EDGED_MQTT__PORT=str(small.port))
    assert lines["status"] == [str(EXIT_FAILED)]
    assert lines["broker"][0].startswith("FAIL  broker") and "at most 1000 bytes" in lines["broker"][0]
    assert "state with 8 faces" in lines["broker"][0] and "max_packet_size" in lines["broker"][0]
    with Mosquitto(tmp_path / "roomy", extra=("max_packet_size 100000",)).start() as roomy:
        lines = _check(EDGED_MQTT__PORT=str(roomy.port))
    assert lines["broker"][0].startswith("PASS  broker") and "messages up to 100000 bytes" in lines["broker"][0]


def test_check_says_what_run_would_about_an_outbox_held_by_another_edged(tmp_path):
    state = tmp_path / "state"
    box = Outbox.open(state, max_messages=10, max_bytes=10_000, max_age_s=60)  # this process plays the daemon
    try:
        lines = _check("--skip-broker", EDGED_STATE_DIR=str(state))
    finally:
        box.close()
    assert lines["status"] == [str(EXIT_FAILED)]
    assert lines["outbox"] == [f"FAIL  outbox   another edged process (pid {os.getpid()}) is using the outbox in "
                               f"EDGED_STATE_DIR={state}: stop it, or give this one its own EDGED_STATE_DIR"]


def test_check_warns_of_a_limit_run_learned_from_the_brokers_drops(tmp_path):
    state = tmp_path / "state"
    box = Outbox.open(state, max_messages=10, max_bytes=10_000, max_age_s=60)
    box.set_refused_size("127.0.0.1:1884", 315)  # what edged run keeps after 3 drops (tests/test_brokerlink.py)
    box.close()
    lines = _check("--skip-broker", EDGED_STATE_DIR=str(state), EDGED_MQTT__PORT="1884")
    assert lines["status"] == [str(EXIT_OK)]
    assert lines["broker"][0].startswith("WARN  broker") and "refused a message of 315 bytes" in lines["broker"][0]
    assert "max_packet_size to at least" in lines["broker"][0]
    assert "broker" not in _check("--skip-broker", EDGED_STATE_DIR=str(state), EDGED_MQTT__PORT="1883")


def test_check_says_what_run_would_about_a_disk_that_refuses_writes(tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    clean = {k: v for k, v in os.environ.items() if not k.upper().startswith("EDGED_")}
    result = subprocess.run([sys.executable, "-m", "edged", "check", "--skip-broker"], cwd=ROOT, text=True,
                            capture_output=True, timeout=120,
                            env={**clean, "EDGED_MODEL__PATH": str(require_model()),
                                 "EDGED_CAMERA__SOURCE": str(SAMPLE_CLIP), "EDGED_STATE_DIR": str(state)},
                            # no byte may be written to any file, as on a full disk (tests/test_bad_input.py)
                            preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (0, resource.RLIM_INFINITY)))
    outbox = [line for line in result.stdout.splitlines() if " outbox " in line]
    assert result.returncode == EXIT_FAILED
    assert outbox[0].startswith(f"FAIL  outbox   cannot write the outbox {state}/outbox.sqlite3")
    assert outbox[0].endswith(f"is the disk of EDGED_STATE_DIR={state} full?")
    assert not list(state.iterdir())  # the probe leaves nothing behind


def test_check_warns_about_a_stock_host_name_as_device_id(monkeypatch):
    import socket

    from edged.checks import run_checks

    for name in [k for k in os.environ if k.startswith("EDGED_")]:
        monkeypatch.delenv(name)
    monkeypatch.setattr(socket, "gethostname", lambda: "raspberrypi")  # a kiosk cloned from the stock image
    config, warning = list(run_checks(None))[:2]
    assert config[:3] == ("config", True, "device raspberrypi")
    assert warning[:2] == ("config", None) and "EDGED_DEVICE_ID" in warning[2]
    monkeypatch.setenv("EDGED_DEVICE_ID", "raspberrypi")  # chosen, not defaulted: no warning
    assert [c for c in run_checks(None) if c[1] is None] == []
