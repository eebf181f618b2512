"""Bad input, everywhere: `edged run` with each kind of mistake gives one clear message naming the thing at fault,
and the right exit status (78 for configuration, so systemd's RestartPreventExitStatus=78 stops a crash loop;
69 for what may pass, like a full disk). Broker credentials and TLS failures are retried, with one message.

Settings are also covered variable by variable in test_settings.py; here is a sample through the real CLI, plus
every outbox variable.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from media import ROOT, SAMPLE_CLIP, require_model
from mosquitto import USERS, free_port

from edged.cli import EXIT_CONFIG, EXIT_OK, EXIT_UNAVAILABLE, main
from edged.publisher import MqttPublisher
from edged.settings import MqttSettings


@pytest.fixture
def inputs(tmp_path: Path) -> dict[str, Path]:
    """Broken files of every kind, made fresh for the test."""
    model = require_model()
    made = {"blocker": tmp_path / "not-a-dir", "empty_model": tmp_path / "empty.tflite",
            "corrupt_model": tmp_path / "corrupt.tflite", "no_sidecar": tmp_path / "lonely.tflite",
            "wrong_shape": tmp_path / "seven.tflite", "empty_cascade": tmp_path / "empty.xml",
            "junk_video": tmp_path / "junk.mp4", "tiny_video": tmp_path / "tiny.avi"}
    made["blocker"].write_text("a file where the state directory should be")
    made["empty_model"].write_bytes(b"")
    made["corrupt_model"].write_bytes(np.random.default_rng(0).bytes(4096))
    for broken in ("empty_model", "corrupt_model", "wrong_shape"):
        shutil.copy(model.with_suffix(".json"), made[broken].with_suffix(".json"))
    shutil.copy(model, made["no_sidecar"])
    shutil.copy(model, made["wrong_shape"])
    meta = json.loads(model.with_suffix(".json").read_text())
    meta["labels"] = meta["labels"][:5]  # the model has 7 outputs: the sidecar describes another model
    made["wrong_shape"].with_suffix(".json").write_text(json.dumps(meta))
    made["empty_cascade"].write_text('<?xml version="1.0"?>\n<opencv_storage>\n</opencv_storage>\n')
    made["junk_video"].write_bytes(b"\x00\x01 not a video " * 200)
    writer = cv2.VideoWriter(str(made["tiny_video"]), cv2.VideoWriter_fourcc(*"MJPG"), 15, (16, 16))
    for i in range(10):
        writer.write(np.full((16, 16, 3), i * 20, np.uint8))
    writer.release()
    return made


# (case, extra variables (values may name a file of `inputs`), exit status, what the message must contain)
CASES = [
    ("port not a number", {"EDGED_MQTT__PORT": "eighteen"}, EXIT_CONFIG, "EDGED_MQTT__PORT: Input should be a valid integer"),
    ("fps zero", {"EDGED_CAMERA__FPS": "0"}, EXIT_CONFIG, "EDGED_CAMERA__FPS: Input should be greater than 0"),
    ("keepalive too short", {"EDGED_MQTT__KEEPALIVE": "1"}, EXIT_CONFIG, "EDGED_MQTT__KEEPALIVE"),
    ("smoothing above 1", {"EDGED_TRACKER__SMOOTHING": "2"}, EXIT_CONFIG, "EDGED_TRACKER__SMOOTHING"),
    ("realtime not a boolean", {"EDGED_CAMERA__REALTIME": "sometimes"}, EXIT_CONFIG, "EDGED_CAMERA__REALTIME"),
    ("log level unknown", {"EDGED_LOG_LEVEL": "LOUD"}, EXIT_CONFIG, "EDGED_LOG_LEVEL: must be one of"),
    ("misspelt variable", {"EDGED_OUTBOX__MAX_MESAGES": "5"}, EXIT_CONFIG, "did you mean EDGED_OUTBOX__MAX_MESSAGES"),
    ("outbox count too small", {"EDGED_OUTBOX__MAX_MESSAGES": "5"}, EXIT_CONFIG,
     "EDGED_OUTBOX__MAX_MESSAGES: Input should be greater than or equal to 10"),
    ("outbox count not a number", {"EDGED_OUTBOX__MAX_MESSAGES": "lots"}, EXIT_CONFIG,
     "EDGED_OUTBOX__MAX_MESSAGES: Input should be a valid integer"),
    ("outbox size zero", {"EDGED_OUTBOX__MAX_MB": "0"}, EXIT_CONFIG, "EDGED_OUTBOX__MAX_MB: Input should be greater than 0"),
    ("outbox age negative", {"EDGED_OUTBOX__MAX_AGE_S": "-1"}, EXIT_CONFIG, "EDGED_OUTBOX__MAX_AGE_S"),
    ("outbox inflight zero", {"EDGED_OUTBOX__INFLIGHT": "0"}, EXIT_CONFIG, "EDGED_OUTBOX__INFLIGHT"),
    ("outbox flush timeout not a number", {"EDGED_OUTBOX__FLUSH_TIMEOUT_S": "soon"}, EXIT_CONFIG,
     "EDGED_OUTBOX__FLUSH_TIMEOUT_S: Input should be a valid number"),
    ("state dir is a file", {"EDGED_STATE_DIR": "{blocker}/edged"}, EXIT_CONFIG,
     "EDGED_STATE_DIR={blocker}/edged: cannot create the state directory"),
    ("model missing", {"EDGED_MODEL__PATH": "{blocker}.tflite"}, EXIT_CONFIG,
     "EDGED_MODEL__PATH={blocker}.tflite: no such file"),
    ("model empty", {"EDGED_MODEL__PATH": "{empty_model}"}, EXIT_CONFIG, "model {empty_model} cannot be loaded"),
    ("model corrupt", {"EDGED_MODEL__PATH": "{corrupt_model}"}, EXIT_CONFIG, "model {corrupt_model} cannot be loaded"),
    ("model sidecar missing", {"EDGED_MODEL__PATH": "{no_sidecar}"}, EXIT_CONFIG, "lonely.json is missing"),
    ("model of another shape", {"EDGED_MODEL__PATH": "{wrong_shape}"}, EXIT_CONFIG, "has 7 outputs but its sidecar"),
    ("cascade empty", {"EDGED_DETECTOR__CASCADE": "{empty_cascade}"}, EXIT_CONFIG, "{empty_cascade}"),
    ("video missing", {"EDGED_CAMERA__SOURCE": "{blocker}.mp4"}, EXIT_CONFIG,
     "EDGED_CAMERA__SOURCE={blocker}.mp4: no such file"),
    ("video unreadable", {"EDGED_CAMERA__SOURCE": "{junk_video}"}, EXIT_CONFIG, "junk.mp4' cannot be read"),
    ("interval infinite", {"EDGED_MQTT__STATS_INTERVAL_S": "inf"}, EXIT_CONFIG,
     "EDGED_MQTT__STATS_INTERVAL_S: Input should be a finite number, got 'inf'"),
    ("backoff beyond an hour", {"EDGED_CAMERA__REOPEN_BACKOFF_MAX_S": "1e12"}, EXIT_CONFIG,
     "EDGED_CAMERA__REOPEN_BACKOFF_MAX_S: Input should be less than or equal to 3600"),
    ("CA file not PEM", {"EDGED_MQTT__TLS": "true", "EDGED_MQTT__CA_FILE": "{blocker}"}, EXIT_CONFIG,
     "EDGED_MQTT__CA_FILE={blocker}: not a usable CA bundle (PEM)"),
    ("client certificate not PEM", {"EDGED_MQTT__TLS": "true", "EDGED_MQTT__CERT_FILE": "{blocker}",
                                    "EDGED_MQTT__KEY_FILE": "{blocker}"}, EXIT_CONFIG,
     "EDGED_MQTT__CERT_FILE={blocker} and EDGED_MQTT__KEY_FILE={blocker}: not a usable certificate and private key"),
    ("picamera2 not installed", {"EDGED_CAMERA__SOURCE": "picamera2"}, EXIT_CONFIG,
     "picamera2 is not installed; on Raspberry Pi OS run 'sudo apt install python3-picamera2'"),
    ("gstreamer without support", {"EDGED_CAMERA__SOURCE": "gst:videotestsrc ! appsink"}, EXIT_CONFIG,
     "is a GStreamer pipeline, but this OpenCV"),
    ("frames too small", {"EDGED_CAMERA__SOURCE": "{tiny_video}"}, EXIT_CONFIG,
     "delivered a 16x16x3 uint8 frame; edged needs 8-bit gray, BGR or BGRA frames of at least 32x32"),
]


@pytest.fixture
def run_in_process(monkeypatch, capsys, tmp_path):
    """`edged run` in this process with a clean EDGED_* environment; returns (status, stderr)."""
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}

    def run(env: dict[str, str]) -> tuple[int, str]:
        for name in list(os.environ):
            if name.upper().startswith("EDGED_"):
                monkeypatch.delenv(name)
        base = {"EDGED_MODEL__PATH": str(require_model()), "EDGED_CAMERA__SOURCE": str(SAMPLE_CLIP),
                "EDGED_CAMERA__REALTIME": "false", "EDGED_MQTT__PORT": str(free_port()),
                "EDGED_STATE_DIR": str(tmp_path / "state")}
        for name, value in {**base, **env}.items():
            monkeypatch.setenv(name, value)
        status = main(["run"])
        return status, capsys.readouterr().err

    yield run
    for sig, handler in handlers.items():  # `edged run` installs its own for SIGTERM and SIGINT
        signal.signal(sig, handler)


@pytest.mark.parametrize(("case", "env", "status", "message"), CASES, ids=[c[0] for c in CASES])
def test_bad_input_exits_with_one_clear_message(run_in_process, inputs, case, env, status, message):
    env = {name: value.format(**inputs) for name, value in env.items()}
    got, stderr = run_in_process(env)
    lines = [line for line in stderr.splitlines() if line.startswith("edged:")]
    assert got == status, stderr
    assert len(lines) == 1 and message.format(**inputs) in lines[0], stderr


def _edged_run(env: dict[str, str], preexec=None, timeout: float = 60) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.upper().startswith("EDGED_")}
    base = {"EDGED_MODEL__PATH": str(require_model()), "EDGED_CAMERA__SOURCE": str(SAMPLE_CLIP),
            "EDGED_CAMERA__REALTIME": "false", "EDGED_MQTT__HOST": "127.0.0.1", "EDGED_MQTT__PORT": str(free_port()),
            "EDGED_MQTT__RECONNECT_MIN_S": "0.2", "EDGED_MQTT__RECONNECT_MAX_S": "0.5", "EDGED_LOG_LEVEL": "INFO"}
    return subprocess.run([sys.executable, "-m", "edged", "run"], env={**clean, **base, **env}, cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout, preexec_fn=preexec)


def test_a_full_disk_for_the_spool_exits_69_naming_the_file(tmp_path):
    # RLIMIT_FSIZE 0: the process may write no byte to any file, as on a full disk (a real OS limit, not a mock;
    # stderr is a pipe, which the limit does not cover).
    state = tmp_path / "state"
    result = _edged_run({"EDGED_STATE_DIR": str(state)},
                        preexec=lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (0, resource.RLIM_INFINITY)))
    lines = [line for line in result.stderr.splitlines() if line.startswith("edged:")]
    assert result.returncode == EXIT_UNAVAILABLE, result.stderr
    assert len(lines) == 1 and f"cannot write the outbox {state}/outbox.sqlite3" in lines[0]
    assert f"is the disk of EDGED_STATE_DIR={state} full?" in lines[0]


@pytest.fixture
def short_clip(tmp_path: Path) -> Path:
    """The sample clip's first 1.5 s: long enough, played in real time, for a few connection attempts."""
    capture = cv2.VideoCapture(str(SAMPLE_CLIP))
    path = tmp_path / "short.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 15, (640, 480))
    for _ in range(22):
        ok, image = capture.read()
        assert ok
        writer.write(image)
    writer.release()
    capture.release()
    return path


def test_wrong_broker_credentials_are_reported_once_and_retried(auth_broker, short_clip, tmp_path):
    result = _edged_run({"EDGED_CAMERA__SOURCE": str(short_clip), "EDGED_CAMERA__REALTIME": "true",
                         "EDGED_MQTT__PORT": str(auth_broker.port), "EDGED_MQTT__USERNAME": "edged",
                         "EDGED_MQTT_PASSWORD": USERS["edged"] + "-typo", "EDGED_STATE_DIR": str(tmp_path / "s")})
    refusals = [line for line in result.stderr.splitlines() if "refused the connection" in line]
    assert result.returncode == EXIT_OK, result.stderr  # the file ended; events wait in the spool
    assert auth_broker.log().count("not authorised") >= 2, "retried"
    assert len(refusals) == 1 and "check EDGED_MQTT__USERNAME and EDGED_MQTT_PASSWORD" in refusals[0]


def test_tls_with_the_wrong_ca_is_reported_once_naming_the_ca_file(tls_broker, short_clip, tmp_path):
    broker, _, wrong_ca = tls_broker
    result = _edged_run({"EDGED_CAMERA__SOURCE": str(short_clip), "EDGED_CAMERA__REALTIME": "true",
                         "EDGED_MQTT__PORT": str(broker.port), "EDGED_MQTT__TLS": "true",
                         "EDGED_MQTT__CA_FILE": str(wrong_ca), "EDGED_STATE_DIR": str(tmp_path / "s")})
    failures = [line for line in result.stderr.splitlines() if "TLS handshake" in line]
    assert result.returncode == EXIT_OK, result.stderr
    assert len(failures) == 1, result.stderr
    assert "certificate verify failed" in failures[0] and "EDGED_MQTT__CA_FILE" in failures[0]


def test_tls_with_the_right_ca_connects(tls_broker, tmp_path):
    broker, ca, _ = tls_broker
    settings = MqttSettings(host="127.0.0.1", port=broker.port, tls=True, ca_file=ca, reconnect_min_s=0.1,
                            reconnect_max_s=0.5)
    publisher = MqttPublisher(settings, "tls-kiosk", None, "m", "0", thermal_path=tmp_path / "none")
    publisher.start()
    try:
        assert publisher.wait_connected(10), publisher.last_error
    finally:
        publisher.close(1.0)


def _check_broker_line(env: dict[str, str]) -> str:
    clean = {k: v for k, v in os.environ.items() if not k.upper().startswith("EDGED_")}
    base = {"EDGED_MODEL__PATH": str(require_model()), "EDGED_CAMERA__SOURCE": str(SAMPLE_CLIP),
            "EDGED_MQTT__HOST": "127.0.0.1"}
    result = subprocess.run([sys.executable, "-m", "edged", "check", "--timeout", "10"], env={**clean, **base, **env},
                            cwd=ROOT, capture_output=True, text=True, timeout=60)
    return result.stdout.splitlines()[-1]


@pytest.mark.parametrize("case", ["wrong CA", "TLS port, TLS off"])
def test_check_and_run_report_a_broker_failure_in_the_same_words(tls_broker, short_clip, tmp_path, case):
    broker, _, wrong_ca = tls_broker
    env = {"EDGED_MQTT__PORT": str(broker.port)}
    if case == "wrong CA":
        env |= {"EDGED_MQTT__TLS": "true", "EDGED_MQTT__CA_FILE": str(wrong_ca)}
    check = _check_broker_line(env)
    result = _edged_run({**env, "EDGED_CAMERA__SOURCE": str(short_clip), "EDGED_CAMERA__REALTIME": "true",
                         "EDGED_STATE_DIR": str(tmp_path / "s")})
    errors = [line.split(" ERROR edged.publisher: ", 1)[1] for line in result.stderr.splitlines()
              if " ERROR edged.publisher: " in line]
    assert result.returncode == EXIT_OK, result.stderr
    assert len(errors) == 1, result.stderr  # said once, however often it is retried
    assert check.startswith("FAIL  broker")
    assert check.split("broker", 1)[1].strip() == errors[0].removesuffix("; retrying")
    if case == "wrong CA":
        assert "certificate verify failed" in errors[0] and "EDGED_MQTT__CA_FILE" in errors[0]
    else:
        assert "closed the connection without answering CONNECT" in errors[0] and "EDGED_MQTT__TLS=true" in errors[0]


def test_check_and_run_say_a_plain_port_is_not_tls(broker, short_clip, tmp_path):
    """The reverse of a TLS port with TLS off: TLS on against a plain MQTT listener, which reads the ClientHello as
    garbage and hangs up (the socket error alone is 'Connection reset by peer')."""
    env = {"EDGED_MQTT__PORT": str(broker.port), "EDGED_MQTT__TLS": "true"}
    check = _check_broker_line(env)
    result = _edged_run({**env, "EDGED_CAMERA__SOURCE": str(short_clip), "EDGED_CAMERA__REALTIME": "true",
                         "EDGED_STATE_DIR": str(tmp_path / "s")})
    errors = [line.split(" ERROR edged.publisher: ", 1)[1] for line in result.stderr.splitlines()
              if " ERROR edged.publisher: " in line]
    assert result.returncode == EXIT_OK, result.stderr
    assert len(errors) == 1, result.stderr
    assert check.split("broker", 1)[1].strip() == errors[0].removesuffix("; retrying")
    assert f"closed the connection during the TLS handshake: is port {broker.port} a plain MQTT port? " \
           "EDGED_MQTT__TLS is true" in errors[0]
