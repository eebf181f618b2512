"""Every MQTT name and the broker host, checked in one place (edged/names.py): what a broker refuses stops the
start with exit 78 naming the variable; what it takes (spaces, any script) is left alone and works for real."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from mosquitto import Subscriber

from edged import __version__
from edged.errors import ConfigError
from edged.names import check_host
from edged.publisher import MqttPublisher
from edged.settings import MqttSettings, load_settings

BAD = [
    ("EDGED_DEVICE_ID", "kiosk\t1", "control character (U+0009)"),
    ("EDGED_DEVICE_ID", "kiosk\x7f", "control character (U+007F)"),
    ("EDGED_DEVICE_ID", "kiosk\x85", "control character (U+0085)"),
    ("EDGED_DEVICE_ID", "k" * 70_000, "70000 bytes long; at most 128"),
    ("EDGED_DEVICE_ID", "é" * 65, "130 bytes long"),
    ("EDGED_DEVICE_ID", "kiosk+1", "topic characters +"),
    ("EDGED_DEVICE_ID", "$kiosk", "must not start with $"),
    ("EDGED_MQTT__TOPIC_PREFIX", "$SYS", "must not start with $"),
    ("EDGED_MQTT__TOPIC_PREFIX", "edged/fleet", "topic characters /"),
    ("EDGED_MQTT__TOPIC_PREFIX", "ed\x00ged", "control character (U+0000)"),
    ("EDGED_MQTT__CLIENT_ID", "c" * 70_000, "70000 bytes long; at most 256"),
    ("EDGED_MQTT__CLIENT_ID", "kiosk\n", "control character (U+000A)"),
    ("EDGED_MQTT__CLIENT_ID", "bad\udcffutf8", "unicode string"),  # pydantic refuses it first
    ("EDGED_HOMEASSISTANT__DISCOVERY_PREFIX", "$ha", "must not start with $"),
    ("EDGED_MQTT__HOST", "broker.local:1883", "write 'broker.local' and put the port in EDGED_MQTT__PORT=1883"),
    ("EDGED_MQTT__HOST", "mqtt://broker.local", "write 'broker.local' (the port goes in EDGED_MQTT__PORT)"),
    ("EDGED_MQTT__HOST", "mqtts://broker.local:8883", "EDGED_MQTT__PORT=8883 and EDGED_MQTT__TLS=true"),
    ("EDGED_MQTT__HOST", "[::1]", "without brackets: write '::1'"),
    ("EDGED_MQTT__HOST", "[fd00::5]:1884", "write 'fd00::5', and 1884 in EDGED_MQTT__PORT"),
    ("EDGED_MQTT__HOST", "broker local", "is not a host name"),
    ("EDGED_MQTT__HOST", "-broker", "is not a host name"),
    ("EDGED_MQTT__HOST", "a:b:c:zz", "neither a host name nor an IP address"),
]


@pytest.mark.parametrize(("variable", "value", "says"), BAD, ids=[f"{v}={x[:12]!r}" for v, x, _ in BAD])
def test_a_name_the_broker_refuses_is_a_configuration_error_naming_the_variable(variable, value, says):
    with pytest.raises(ConfigError) as err:
        load_settings({variable: value})
    assert str(err.value).startswith(f"{variable}: ")
    assert says in str(err.value)


@pytest.mark.parametrize("host", ["localhost", "broker.example.com", "broker.example.com.", "mqtt_1", "10.0.0.5",
                                  "::1", "fe80::1%eth0", "2001:db8::8"])
def test_every_host_form_is_taken(host):
    assert check_host(host) == host
    assert load_settings({"EDGED_MQTT__HOST": host}).mqtt.host == host


def test_edged_run_exits_78_naming_the_variable_for_a_bad_name(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGED_")}
    env["EDGED_DEVICE_ID"] = "kiosk\tlobby"
    done = subprocess.run([sys.executable, "-m", "edged", "run"], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 78
    assert "EDGED_DEVICE_ID: contains a control character (U+0009)" in done.stderr


def test_names_the_rules_allow_work_on_a_real_broker(broker):
    """Spaces, accents and other scripts are legal in topics and client ids: nothing is replaced or refused."""
    device, prefix, client = "lobby café 2", "edged-ü", "clïent id"
    load_settings({"EDGED_DEVICE_ID": device, "EDGED_MQTT__TOPIC_PREFIX": prefix, "EDGED_MQTT__CLIENT_ID": client})
    live = Subscriber(broker.port, f"{prefix}/#")
    settings = MqttSettings(host="127.0.0.1", port=broker.port, topic_prefix=prefix, client_id=client)
    pub = MqttPublisher(settings, device, None, "m", __version__)
    try:
        pub.start()
        assert pub.wait_connected(5)
        assert live.wait_count(f"{prefix}/{device}/status", 1)[0].text == "online"
    finally:
        pub.close(1.0)
        live.close()


def test_stock_host_name_warning():
    cloned = load_settings({})
    assert cloned.stock_device_id_warning is None or "EDGED_DEVICE_ID" in cloned.stock_device_id_warning
    from edged.names import stock_host_warning

    warning = stock_host_warning("raspberrypi", from_host_name=True, client_id_set=False)
    assert "device id and client id" in warning and "EDGED_DEVICE_ID" in warning
    assert stock_host_warning("raspberrypi", from_host_name=False, client_id_set=False) is None  # set on purpose
    assert stock_host_warning("kiosk-lobby", from_host_name=True, client_id_set=False) is None
    assert load_settings({"EDGED_DEVICE_ID": "raspberrypi"}).stock_device_id_warning is None
