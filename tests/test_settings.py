"""The configuration model: defaults, every variable, messages that name the variable, secrets."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from edged.errors import ConfigError
from edged.settings import (
    CameraSettings,
    MqttSettings,
    Settings,
    describe,
    env_name,
    known_variables,
    load_settings,
    render_env_file,
)

ENV_EXAMPLE = Path(__file__).resolve().parent.parent / "systemd" / "edged.env.example"


def test_defaults():
    s = load_settings({"HOME": "/home/kiosk"})
    assert s.log_level == "INFO"
    assert s.camera == CameraSettings()
    assert (s.camera.source, s.camera.width, s.camera.height, s.camera.queue_size) == ("0", 640, 480, 2)
    assert (s.detector.cascade, s.detector.downscale, s.detector.scale_factor) == (None, 0.5, 1.2)
    assert (s.model.path, s.model.threads, s.model.batch) == (None, 1, 8)
    assert (s.tracker.smoothing, s.tracker.min_hits, s.tracker.change_margin) == (0.3, 2, 0.1)
    assert (s.mqtt.host, s.mqtt.port, s.mqtt.protocol, s.mqtt.topic_prefix) == ("localhost", 1883, "5", "edged")
    assert s.mqtt_password is None and s.mqtt.client_id is None and not s.mqtt.tls


def test_device_id_defaults_to_host_name_safe_for_topics():
    device = load_settings({}).device_id
    assert device
    assert not set(device) & set("+#/ ")
    host = socket.gethostname()
    if not set(host) & set("+#/ "):
        assert device == host


def test_state_dir_from_systemd_else_home(tmp_path):
    assert load_settings({"STATE_DIRECTORY": "/var/lib/edged:/var/lib/other"}).state_dir == Path("/var/lib/edged")
    assert load_settings({"STATE_DIRECTORY": ""}).state_dir == Path.home() / ".local/state/edged"
    assert load_settings({"EDGED_STATE_DIR": str(tmp_path)}).state_dir == tmp_path


# One non-default value for every variable: each must land in its field.
VALUES = {
    "EDGED_DEVICE_ID": ("kiosk-7", "kiosk-7"),
    "EDGED_LOG_LEVEL": ("debug", "DEBUG"),
    "EDGED_STATE_DIR": ("/srv/edged", Path("/srv/edged")),
    "EDGED_CAMERA__SOURCE": ("gst:videotestsrc ! appsink", "gst:videotestsrc ! appsink"),
    "EDGED_CAMERA__WIDTH": ("320", 320),
    "EDGED_CAMERA__HEIGHT": ("240", 240),
    "EDGED_CAMERA__FPS": ("15", 15.0),
    "EDGED_CAMERA__REALTIME": ("false", False),
    "EDGED_CAMERA__QUEUE_SIZE": ("1", 1),
    "EDGED_CAMERA__REOPEN_BACKOFF_MAX_S": ("5", 5.0),
    "EDGED_DETECTOR__CASCADE": ("/opt/haar.xml", Path("/opt/haar.xml")),
    "EDGED_DETECTOR__DOWNSCALE": ("1", 1.0),
    "EDGED_DETECTOR__SCALE_FACTOR": ("1.1", 1.1),
    "EDGED_DETECTOR__MIN_NEIGHBORS": ("3", 3),
    "EDGED_DETECTOR__MIN_FACE": ("64", 64),
    "EDGED_DETECTOR__THREADS": ("2", 2),
    "EDGED_DETECTOR__FULL_SCAN_EVERY": ("1", 1),
    "EDGED_DETECTOR__REGION_MARGIN": ("0.75", 0.75),
    "EDGED_MODEL__PATH": ("/opt/m.tflite", Path("/opt/m.tflite")),
    "EDGED_MODEL__THREADS": ("4", 4),
    "EDGED_MODEL__BATCH": ("16", 16),
    "EDGED_MODEL__RUNTIME": ("tflite-runtime", "tflite-runtime"),
    "EDGED_MODEL__XNNPACK": ("false", False),
    "EDGED_TRACKER__IOU_THRESHOLD": ("0.5", 0.5),
    "EDGED_TRACKER__MAX_MISSING_S": ("2.5", 2.5),
    "EDGED_TRACKER__SMOOTHING": ("1", 1.0),
    "EDGED_TRACKER__MIN_HITS": ("3", 3),
    "EDGED_TRACKER__CHANGE_MARGIN": ("0.2", 0.2),
    "EDGED_TRACKER__MIN_CHANGE_S": ("2.5", 2.5),
    "EDGED_MQTT__HOST": ("broker.lan", "broker.lan"),
    "EDGED_MQTT__PORT": ("8883", 8883),
    "EDGED_MQTT__PROTOCOL": ("3.1.1", "3.1.1"),
    "EDGED_MQTT__CLIENT_ID": ("kiosk-7-edged", "kiosk-7-edged"),
    "EDGED_MQTT__USERNAME": ("edged", "edged"),
    "EDGED_MQTT__KEEPALIVE": ("60", 60),
    "EDGED_MQTT__TLS": ("true", True),
    "EDGED_MQTT__TLS_INSECURE": ("1", True),
    "EDGED_MQTT__TOPIC_PREFIX": ("shop", "shop"),
    "EDGED_MQTT__STATE_INTERVAL_S": ("1", 1.0),
    "EDGED_MQTT__STATS_INTERVAL_S": ("30", 30.0),
    "EDGED_MQTT__RECONNECT_MIN_S": ("2", 2.0),
    "EDGED_MQTT__RECONNECT_MAX_S": ("120", 120.0),
    "EDGED_HOMEASSISTANT__ENABLED": ("true", True),
    "EDGED_HOMEASSISTANT__DISCOVERY_PREFIX": ("ha", "ha"),
    "EDGED_HOMEASSISTANT__STATUS_TOPIC": ("ha/status", "ha/status"),
    "EDGED_OUTBOX__MAX_MESSAGES": ("5000", 5000),
    "EDGED_OUTBOX__MAX_MB": ("2.5", 2.5),
    "EDGED_OUTBOX__MAX_AGE_S": ("3600", 3600.0),
    "EDGED_OUTBOX__INFLIGHT": ("50", 50),
    "EDGED_OUTBOX__FLUSH_TIMEOUT_S": ("10", 10.0),
    "EDGED_DASHBOARD__HOST": ("0.0.0.0", "0.0.0.0"),
    "EDGED_DASHBOARD__PORT": ("8443", 8443),
    "EDGED_DASHBOARD__USERNAME": ("ops", "ops"),
    "EDGED_DASHBOARD__COOKIE_DAYS": ("90", 90.0),
    "EDGED_DASHBOARD__DATABASE": ("/srv/dash.sqlite3", Path("/srv/dash.sqlite3")),
    "EDGED_DASHBOARD__RETENTION_DAYS": ("2", 2.0),
    "EDGED_DASHBOARD__STALE_S": ("30", 30.0),
    "EDGED_DASHBOARD__WINDOW_S": ("600", 600.0),
    "EDGED_DASHBOARD__PUSH_INTERVAL_S": ("1", 1.0),
}
SECRETS = {"EDGED_MQTT_PASSWORD": "hunter2", "EDGED_DASHBOARD__TOKEN": "a-token-of-16-chars",
           "EDGED_DASHBOARD__PASSWORD": "pass-word"}
FILES = ("EDGED_MQTT__CA_FILE", "EDGED_MQTT__CERT_FILE", "EDGED_MQTT__KEY_FILE")


def _get(settings: Settings, var: str) -> object:
    path = var.removeprefix("EDGED_").lower().split("__")
    owner = getattr(settings, path[0]) if len(path) == 2 else settings
    return getattr(owner, path[-1])


def test_every_variable_reaches_its_field(tmp_path):
    env = {var: raw for var, (raw, _) in VALUES.items()}
    for var in FILES:
        (tmp_path / var).write_text("pem")
        env[var] = str(tmp_path / var)
    s = load_settings({**env, **SECRETS})
    for var, (_, expected) in VALUES.items():
        assert _get(s, var) == expected, var
    for var in FILES:
        assert _get(s, var) == tmp_path / var
    for var, secret in SECRETS.items():
        assert _get(s, var).get_secret_value() == secret, var
    assert set(VALUES) | set(FILES) | set(SECRETS) == set(known_variables())


def test_names_are_case_insensitive_and_empty_means_default():
    s = load_settings({"edged_mqtt__port": "1884", "EDGED_MQTT__HOST": ""})
    assert (s.mqtt.port, s.mqtt.host) == (1884, "localhost")


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"EDGED_MQTT__PORT": "abc"}, "EDGED_MQTT__PORT: Input should be a valid integer, got 'abc'"),
        ({"EDGED_MQTT__PORT": "70000"}, "EDGED_MQTT__PORT: Input should be less than or equal to 65535"),
        ({"EDGED_CAMERA__QUEUE_SIZE": "9"}, "EDGED_CAMERA__QUEUE_SIZE: Input should be less than or equal to 8"),
        ({"EDGED_CAMERA__REALTIME": "maybe"}, "EDGED_CAMERA__REALTIME: Input should be a valid boolean, got 'maybe'"),
        ({"EDGED_DETECTOR__DOWNSCALE": "0"}, "EDGED_DETECTOR__DOWNSCALE: Input should be greater than 0"),
        ({"EDGED_DETECTOR__SCALE_FACTOR": "1"}, "EDGED_DETECTOR__SCALE_FACTOR: Input should be greater than 1"),
        ({"EDGED_TRACKER__SMOOTHING": "1.5"}, "EDGED_TRACKER__SMOOTHING: Input should be less than or equal to 1"),
        ({"EDGED_MODEL__THREADS": "0"}, "EDGED_MODEL__THREADS: Input should be greater than or equal to 1"),
        ({"EDGED_MQTT__PROTOCOL": "4"}, "EDGED_MQTT__PROTOCOL: Input should be '5' or '3.1.1', got '4'"),
        ({"EDGED_LOG_LEVEL": "loud"}, "EDGED_LOG_LEVEL: must be one of DEBUG"),
        ({"EDGED_DEVICE_ID": "a/b"}, "EDGED_DEVICE_ID: must not contain the MQTT topic characters /"),
        ({"EDGED_MQTT__TOPIC_PREFIX": "x/#"}, "EDGED_MQTT__TOPIC_PREFIX: must not contain the MQTT topic characters # /"),
        ({"EDGED_MQTT__RECONNECT_MIN_S": "10", "EDGED_MQTT__RECONNECT_MAX_S": "5"},
         "EDGED_MQTT__RECONNECT_MAX_S must be at least EDGED_MQTT__RECONNECT_MIN_S"),
        ({"EDGED_MQTT__TLS_INSECURE": "true"}, "EDGED_MQTT__TLS_INSECURE is set but EDGED_MQTT__TLS is not true"),
        ({"EDGED_MQTT_PASSWORD": "x"}, "EDGED_MQTT_PASSWORD is set but EDGED_MQTT__USERNAME is not"),
    ],
)
def test_bad_value_names_the_variable(env, expected):
    with pytest.raises(ConfigError) as err:
        load_settings(env)
    assert str(err.value).startswith(expected)


def test_every_error_is_reported_once():
    with pytest.raises(ConfigError) as err:
        load_settings({"EDGED_MQTT__PORT": "x", "EDGED_MODEL__BATCH": "0"})
    lines = str(err.value).splitlines()
    assert len(lines) == 2
    assert {line.split(":")[0] for line in lines} == {"EDGED_MQTT__PORT", "EDGED_MODEL__BATCH"}


def test_tls_files_must_exist_and_pair(tmp_path):
    cert = tmp_path / "cert.pem"
    cert.write_text("pem")
    with pytest.raises(ConfigError, match=r"EDGED_MQTT__CA_FILE=.*missing\.pem: no such file"):
        load_settings({"EDGED_MQTT__TLS": "true", "EDGED_MQTT__CA_FILE": str(tmp_path / "missing.pem")})
    with pytest.raises(ConfigError, match="EDGED_MQTT__CERT_FILE and EDGED_MQTT__KEY_FILE must be set together"):
        load_settings({"EDGED_MQTT__TLS": "true", "EDGED_MQTT__CERT_FILE": str(cert)})
    with pytest.raises(ConfigError, match="EDGED_MQTT__CA_FILE is set but EDGED_MQTT__TLS is not true"):
        load_settings({"EDGED_MQTT__CA_FILE": str(cert)})


def test_unknown_variable_is_reported_with_a_suggestion():
    with pytest.raises(ConfigError) as err:
        load_settings({"EDGED_MQTT__HSOT": "x", "EDGED_FROBNICATE": "1", "OTHER_VAR": "ignored"})
    assert str(err.value).splitlines() == [
        "EDGED_FROBNICATE: unknown variable",
        "EDGED_MQTT__HSOT: unknown variable (did you mean EDGED_MQTT__HOST?)",
    ]


def test_password_from_credentials_directory(tmp_path):
    (tmp_path / "mqtt_password").write_text("from-systemd\n")
    env = {"CREDENTIALS_DIRECTORY": str(tmp_path), "EDGED_MQTT__USERNAME": "edged"}
    assert load_settings(env).mqtt_password.get_secret_value() == "from-systemd"
    # the environment wins over the credential file
    env["EDGED_MQTT_PASSWORD"] = "from-env"
    assert load_settings(env).mqtt_password.get_secret_value() == "from-env"


def test_an_empty_credential_file_means_no_password(tmp_path):
    # the installer leaves an empty /etc/edged/mqtt_password so that LoadCredential= finds its source
    (tmp_path / "mqtt_password").write_text("\n")
    assert load_settings({"CREDENTIALS_DIRECTORY": str(tmp_path)}).mqtt_password is None


def test_describe_masks_secrets_and_covers_every_variable():
    s = load_settings({"EDGED_MQTT__USERNAME": "edged", "EDGED_MQTT_PASSWORD": "hunter2", "EDGED_MQTT__PORT": "1884"})
    rows = describe(s)
    assert [var for var, _, _ in rows] == known_variables()
    table = {var: (value, description) for var, value, description in rows}
    assert table["EDGED_MQTT_PASSWORD"][0] == "**********"
    assert "hunter2" not in repr(rows)
    assert table["EDGED_MQTT__PORT"][0] == "1884"
    assert all(description for _, description in table.values())


def test_env_example_matches_the_model():
    text = render_env_file()
    for var in known_variables():
        assert f"\n#{var}=" in text
    assert f"#{env_name('mqtt', 'port')}=1883\n" in text
    assert ENV_EXAMPLE.read_text() == text, "regenerate with: python -m edged.settings > systemd/edged.env.example"


def test_sections_reject_unknown_fields():
    with pytest.raises(ValueError, match="Extra inputs are not permitted"):
        MqttSettings(hostname="x")
