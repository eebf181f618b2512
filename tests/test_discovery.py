"""Home Assistant MQTT discovery on a real broker: required fields, retention, re-sending on HA's birth message,
and the value templates evaluated with Jinja on the state and stats the daemon really published."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading

import pytest
from media import ROOT, SAMPLE_CLIP, require_model
from mosquitto import Subscriber
from test_publisher import STATS, track

from edged import __version__
from edged.discovery import EMOTIONS, NO_EMOTION, HomeAssistantDiscovery, discovery_for, node_id
from edged.errors import ConfigError
from edged.payloads import State, Stats
from edged.publisher import MqttPublisher
from edged.settings import HomeAssistantSettings, MqttSettings, load_settings

# What Home Assistant's MQTT discovery docs require of a sensor config, and what edged promises on top.
CONFIG_TOPIC = re.compile(r"^homeassistant/sensor/[a-zA-Z0-9_-]+/[a-zA-Z0-9_-]+/config$")
# Home Assistant's own entity-id validator (homeassistant.core.VALID_ENTITY_ID): no double, leading or trailing _.
ENTITY_ID = re.compile(r"^(?!.+__)(?!_)[\da-z_]+(?<!_)\.(?!_)[\da-z_]+(?<!_)$")
REQUIRED = ("name", "unique_id", "default_entity_id", "device", "origin", "state_topic", "value_template",
            "availability_topic", "payload_available", "payload_not_available", "expire_after")


def check_config(topic: str, config: dict, device: str) -> None:
    """Assert one discovery config has every field Home Assistant needs, with values that make sense."""
    assert CONFIG_TOPIC.match(topic), topic
    missing = [key for key in REQUIRED if key not in config]
    assert not missing, f"{topic} lacks {missing}"
    assert config["device"]["identifiers"] and config["device"]["name"] == device
    assert {"manufacturer", "model", "sw_version"} <= set(config["device"])
    assert config["origin"]["name"] == "edged"
    assert config["availability_topic"] == f"edged/{device}/status"
    assert (config["payload_available"], config["payload_not_available"]) == ("online", "offline")
    assert config["state_topic"] in (f"edged/{device}/state", f"edged/{device}/stats")
    assert ENTITY_ID.match(config["default_entity_id"]), config["default_entity_id"]
    assert config["default_entity_id"] == f"sensor.{config['object_id']}"  # older Home Assistant reads object_id
    assert isinstance(config["expire_after"], int) and config["expire_after"] > 0
    if config.get("device_class") == "enum":
        assert set(config["options"]) == {*EMOTIONS, NO_EMOTION} and "unit_of_measurement" not in config
    if "unit_of_measurement" in config:
        assert config["state_class"] == "measurement"


def render(template: str, payload: bytes) -> str:
    """Evaluate a value_template as Home Assistant does for a JSON payload (`value` and `value_json`)."""
    jinja2 = pytest.importorskip("jinja2", reason="the test extra installs jinja2 (pip install '.[test]')")
    environment = jinja2.Environment(undefined=jinja2.Undefined)
    return environment.from_string(template).render(value=payload.decode(), value_json=json.loads(payload)).strip()


def configs_in(messages) -> dict[str, dict]:
    return {m.topic: json.loads(m.payload) for m in messages if m.topic.startswith("homeassistant/") and m.payload}


def make(port: int, device: str = "kiosk-1", enabled: bool = True, **mqtt: object) -> MqttPublisher:
    settings = MqttSettings(host="127.0.0.1", port=port, reconnect_min_s=0.05, reconnect_max_s=0.2, **mqtt)
    discovery = discovery_for(HomeAssistantSettings(enabled=enabled), settings, device, "emotions-test", __version__)
    return MqttPublisher(settings, device, None, "emotions-test", __version__, discovery=discovery)


def test_discovery_configs_are_retained_complete_and_sent_before_online(broker):
    live = Subscriber(broker.port, "#")
    pub = make(broker.port)
    try:
        pub.start()
        assert pub.wait_connected(5)
        live.wait_for(lambda ms: any(m.topic == "edged/kiosk-1/status" for m in ms), what="online")
        topics = [m.topic for m in live.messages]
        configs = configs_in(live.messages)
        assert set(configs) == {f"homeassistant/sensor/edged_kiosk-1/{o}/config" for o in ("faces", "emotion", "fps")}
        assert max(topics.index(t) for t in configs) < topics.index("edged/kiosk-1/state") < topics.index(
            "edged/kiosk-1/status")
        for topic, config in configs.items():
            check_config(topic, config, "kiosk-1")
        assert len({c["unique_id"] for c in configs.values()}) == 3
        assert len({json.dumps(c["device"], sort_keys=True) for c in configs.values()}) == 1  # one device

        # Home Assistant starting later finds them: they are retained.
        late = Subscriber(broker.port, "homeassistant/#")
        retained = late.wait_count(next(iter(configs)), 1)
        late.wait_for(lambda ms: len(ms) == 3, what="3 retained configs")
        assert all(m.retain and m.qos == 1 for m in late.messages) and retained
        late.close()
    finally:
        pub.close(timeout=1.0)
        live.close()


def test_discovery_is_sent_again_when_home_assistant_comes_online(broker):
    pub = make(broker.port)
    watcher = Subscriber(broker.port, "homeassistant/sensor/#")
    status = Subscriber(broker.port, "edged/kiosk-1/status")
    try:
        pub.start()
        assert pub.wait_connected(5)
        watcher.wait_for(lambda ms: len(ms) == 3, what="the first 3 configs")
        # The publisher subscribes before it publishes `online`, and the broker handles one client's packets in
        # order: once `online` is out, the subscription to homeassistant/status is in place.
        status.wait_count("edged/kiosk-1/status", 1)
        watcher.publish("homeassistant/status", "offline")  # HA's Last Will: nothing to do
        watcher.publish("homeassistant/status", "online")  # HA's birth message: send everything again
        again = watcher.wait_for(lambda ms: ms[3:] if len(ms) >= 6 else None, what="3 configs again")
        assert configs_in(again) == configs_in(watcher.messages[:3])
        threading.Event().wait(0.5)  # time for a round `offline` would have wrongly triggered to arrive
        assert len(watcher.messages) == 6
    finally:
        pub.close(timeout=1.0)
        watcher.close()
        status.close()


def test_nothing_is_published_under_the_discovery_prefix_when_disabled(broker):
    everything = Subscriber(broker.port, "#")
    pub = make(broker.port, enabled=False)
    try:
        pub.start()
        assert pub.wait_connected(5)
        everything.wait_for(lambda ms: any(m.topic == "edged/kiosk-1/status" for m in ms), what="online")
        everything.publish("homeassistant/status", "online")  # must not wake anything up either
        everything.publish("edged/marker", "end")  # everything before it has arrived once it does
        everything.wait_for(lambda ms: any(m.topic == "edged/marker" for m in ms), what="the marker")
        published = {m.topic for m in everything.messages} - {"homeassistant/status", "edged/marker"}
        assert published == {"edged/kiosk-1/state", "edged/kiosk-1/status"}
    finally:
        pub.close(timeout=1.0)
        everything.close()


def test_templates_read_live_state_and_stats(broker):
    """Each value_template, evaluated on the payloads the publisher really sent: faces, emotion, fps."""
    pub = make(broker.port, state_interval_s=0)
    sub = Subscriber(broker.port, "#")
    try:
        pub.start()
        assert pub.wait_connected(5)
        pub.state([track(1, "sad"), track(2, "happy", x=90), track(3, "happy", x=170)], 1_700_000_002.0)
        pub.stats(STATS)
        pub.state([], 1_700_000_003.0)
        states = sub.wait_count("edged/kiosk-1/state", 3)
        stats = sub.wait_count("edged/kiosk-1/stats", 1)
        configs = configs_in(sub.messages)
    finally:
        pub.close(timeout=1.0)
        sub.close()
    faces, emotion, fps = (configs[f"homeassistant/sensor/edged_kiosk-1/{o}/config"] for o in ("faces", "emotion", "fps"))
    assert [render(faces["value_template"], m.payload) for m in states] == ["0", "3", "0"]
    assert [render(emotion["value_template"], m.payload) for m in states] == ["none", "happy", "none"]
    assert render(fps["value_template"], stats[0].payload) == str(STATS["fps"])
    assert State.model_validate_json(states[1].payload).dominant_emotion == "happy"  # two happy faces beat one sad
    Stats.model_validate_json(stats[0].payload)


def test_daemon_with_discovery_on_the_sample_clip(broker):
    """`edged run` with EDGED_HOMEASSISTANT__ENABLED: configs, then HA's templates on every state and stats of the clip."""
    model = require_model()
    sub = Subscriber(broker.port, "#")
    clean = {k: v for k, v in os.environ.items() if not k.upper().startswith("EDGED_")}
    env = {**clean, "EDGED_MODEL__PATH": str(model), "EDGED_CAMERA__SOURCE": str(SAMPLE_CLIP),
           "EDGED_CAMERA__REALTIME": "false", "EDGED_MQTT__HOST": "127.0.0.1", "EDGED_MQTT__PORT": str(broker.port),
           "EDGED_DEVICE_ID": "clip", "EDGED_HOMEASSISTANT__ENABLED": "true"}
    try:
        result = subprocess.run([sys.executable, "-m", "edged", "run"], env=env, cwd=ROOT, capture_output=True,
                                text=True, timeout=120)
        assert result.returncode == 0, result.stderr
        sub.wait_for(lambda ms: any(m.topic == "edged/clip/status" and m.text == "offline" for m in ms), what="offline")
        configs = configs_in(sub.messages)
        states, stats = sub.on("edged/clip/state"), sub.on("edged/clip/stats")
    finally:
        sub.close()
    assert len(configs) == 3
    for topic, config in configs.items():
        check_config(topic, config, "clip")
    by_object = {topic.split("/")[3]: config for topic, config in configs.items()}
    seen_emotions, seen_counts = set(), set()
    for message in states:
        state = State.model_validate_json(message.payload)
        count = render(by_object["faces"]["value_template"], message.payload)
        emotion = render(by_object["emotion"]["value_template"], message.payload)
        assert count == str(len(state.faces))
        assert emotion in by_object["emotion"]["options"]
        assert (emotion == NO_EMOTION) == (not state.faces)
        seen_emotions.add(emotion)
        seen_counts.add(count)
    assert {"0", "1"} <= seen_counts and "happy" in seen_emotions  # the astronaut smiles
    assert [float(render(by_object["fps"]["value_template"], m.payload)) for m in stats] == [
        Stats.model_validate_json(m.payload).fps for m in stats]


def test_node_ids_are_topic_safe_and_distinct():
    assert node_id("edged", "kiosk-lobby_2") == "edged_kiosk-lobby_2"
    dotted, underscored = node_id("edged", "kiosk.1"), node_id("edged", "kiosk_1")
    assert re.fullmatch(r"[a-zA-Z0-9_-]+", dotted) and dotted != underscored
    for device in ("café 1", "lobby café 2", "_x_", "--", "Ünïcode__kiosk.", "キオスク", "a" * 128):
        ha = HomeAssistantDiscovery(HomeAssistantSettings(enabled=True), MqttSettings(), device, "m", "0")
        for topic, config in ha.configs().items():
            assert re.fullmatch(r"homeassistant/sensor/[a-zA-Z0-9_-]+/\w+/config", topic)
            assert ENTITY_ID.match(config["default_entity_id"]), (device, config["default_entity_id"])
    ha = HomeAssistantDiscovery(HomeAssistantSettings(enabled=True), MqttSettings(), "lobby café 2", "m", "0")
    assert ha.configs()[ha.config_topic("faces")]["default_entity_id"] == "sensor.edged_lobby_cafe_2_1a7482_faces"


def test_expire_after_follows_the_publishing_intervals():
    ha = HomeAssistantDiscovery(HomeAssistantSettings(enabled=True),
                                MqttSettings(state_interval_s=20, stats_interval_s=60), "k", "m", "0")
    expiry = {topic.split("/")[3]: c["expire_after"] for topic, c in ha.configs().items()}
    assert expiry == {"faces": 80, "emotion": 80, "fps": 180}  # 4 missed states, 3 missed stats
    assert discovery_for(HomeAssistantSettings(), MqttSettings(), "k", "m", "0") is None


def test_bad_discovery_prefix_names_the_variable():
    with pytest.raises(ConfigError, match="EDGED_HOMEASSISTANT__DISCOVERY_PREFIX"):
        load_settings({"EDGED_HOMEASSISTANT__DISCOVERY_PREFIX": "ha/#"})
    settings = load_settings({"EDGED_HOMEASSISTANT__ENABLED": "true", "EDGED_HOMEASSISTANT__DISCOVERY_PREFIX": "ha"})
    assert settings.homeassistant.enabled and settings.homeassistant.discovery_prefix == "ha"


def test_the_example_in_the_docs_is_what_edged_publishes():
    doc = (ROOT / "docs" / "homeassistant.md").read_text()
    topic, text = re.search(r"<!-- example: discovery (\S+) -->\n```json\n(.*?)```", doc, re.S).groups()
    ha = HomeAssistantDiscovery(HomeAssistantSettings(enabled=True), MqttSettings(), "kiosk-lobby",
                                "emotions-int8-1a93ada7", "0.2.0")
    assert ha.configs()[topic] == json.loads(text)
