"""The broker configurations in docs/fleet.md, run as written on real Mosquitto brokers: a kiosk broker bridged
to a central one, a shared subscription splitting events between two workers, and the topic ACL."""

from __future__ import annotations

import getpass
import json
import re
import shlex
import subprocess
import threading
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from media import ROOT
from mosquitto import MOSQUITTO, Mosquitto, Subscriber, free_port, wait_until
from paho.mqtt.enums import CallbackAPIVersion
from pydantic import SecretStr
from test_publisher import track

from edged import __version__
from edged.discovery import discovery_for
from edged.faces import TrackEvent
from edged.publisher import MqttPublisher
from edged.settings import HomeAssistantSettings, MqttSettings

DOC = (ROOT / "docs" / "fleet.md").read_text()


def block(name: str) -> str:
    found = re.search(rf"<!-- run: {name} [^>]*-->\n```\w+\n(.*?)```", DOC, re.S)
    assert found, f"docs/fleet.md lost its {name} block"
    return found.group(1)


def publisher(port: int, device: str, *, discovery: bool = False, username: str | None = None,
              password: str | None = None) -> MqttPublisher:
    mqtt = MqttSettings(host="127.0.0.1", port=port, reconnect_min_s=0.05, reconnect_max_s=0.2, state_interval_s=0,
                        username=username)
    found = discovery_for(HomeAssistantSettings(enabled=discovery), mqtt, device, "emotions-test", __version__)
    pub = MqttPublisher(mqtt, device, SecretStr(password) if password else None, "emotions-test", __version__,
                        discovery=found)
    pub.start()
    return pub


def test_kiosk_bridge_forwards_to_the_central_broker(broker, tmp_path: Path):
    central = broker
    kiosk_port = free_port()
    config = block("kiosk-bridge")
    config = config.replace("listener 1883 127.0.0.1", f"listener {kiosk_port} 127.0.0.1")
    config = config.replace("central.example.net:1883", f"127.0.0.1:{central.port}")
    config += f"user {getpass.getuser()}\npersistence false\nlog_dest file {tmp_path / 'kiosk.log'}\nlog_type all\n"
    (tmp_path / "kiosk.conf").write_text(config)
    watcher = Subscriber(central.port, "#")
    kiosk_broker = subprocess.Popen([MOSQUITTO, "-c", str(tmp_path / "kiosk.conf")], stderr=subprocess.DEVNULL)
    pub = None
    try:
        watcher.wait_for(lambda ms: any(m.topic == "edged/kiosk-lobby/bridge" and m.text == "1" for m in ms),
                         timeout=10, what="the bridge's notification 1 on the central broker")
        pub = publisher(kiosk_port, "kiosk-lobby", discovery=True)
        assert pub.wait_connected(5)
        pub.event(TrackEvent("face_appeared", track(), 1_700_000_000.0))
        watcher.wait_count("edged/kiosk-lobby/events", 1)
        assert watcher.on("edged/kiosk-lobby/status")[-1].text == "online"
        configs = [m for m in watcher.messages if m.topic.startswith("homeassistant/sensor/edged_kiosk-lobby/")]
        assert len(configs) == 3
        # Home Assistant, connected to the central broker, comes online: the bridge carries that in, and the
        # kiosk's discovery comes back out.
        watcher.publish("homeassistant/status", "online")
        watcher.wait_for(lambda ms: len([m for m in ms if m.topic.startswith("homeassistant/sensor/")]) == 6,
                         what="discovery sent again through the bridge")

        kiosk_broker.kill()  # the kiosk drops off the network: no clean disconnect
        kiosk_broker.wait(5)
        watcher.wait_for(lambda ms: ms[-1].topic == "edged/kiosk-lobby/bridge" and ms[-1].text == "0",
                         timeout=10, what="the bridge's Last Will 0 on the central broker")
        # edged's own Last Will fired nowhere the central broker could see: its status there still says online
        assert watcher.on("edged/kiosk-lobby/status")[-1].text == "online"
    finally:
        if pub is not None:
            pub.close(timeout=0.5)
        if kiosk_broker.poll() is None:
            kiosk_broker.kill()
            kiosk_broker.wait(5)
        watcher.close()


def test_shared_subscription_splits_events_between_two_workers(broker):
    commands = [line for line in block("shared-subscription").splitlines() if line.startswith("mosquitto_sub")]
    assert len(commands) == 2
    workers = [subprocess.Popen(["stdbuf", "-oL", *shlex.split(c), "-h", "127.0.0.1", "-p", str(broker.port)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for c in commands]
    lines: list[list[str]] = [[], []]
    readers = [threading.Thread(target=lambda w=w, out=out: out.extend(w.stdout), daemon=True)
               for w, out in zip(workers, lines, strict=True)]
    for reader in readers:
        reader.start()
    pub = publisher(broker.port, "kiosk-1")
    everything = Subscriber(broker.port, "edged/+/events")
    try:
        wait_until(lambda: all(f"Received SUBSCRIBE from worker-{i}" in broker.log() for i in (1, 2)),
                   what="both workers to subscribe")
        assert pub.wait_connected(5)
        for i in range(100):
            pub.event(TrackEvent("face_appeared", track(id_=i), 1_700_000_000.0 + i))
        everything.wait_count("edged/kiosk-1/events", 100)
        wait_until(lambda: len(lines[0]) + len(lines[1]) >= 100, what="the workers' 100 events")
    finally:
        pub.close(timeout=1.0)
        everything.close()
        for w in workers:
            w.terminate()
            w.wait(5)
    seqs = [{json.loads(line)["seq"] for line in out} for out in lines]
    assert seqs[0] and seqs[1], "each worker gets a share"
    assert not seqs[0] & seqs[1], "no event goes to both"
    assert seqs[0] | seqs[1] == set(range(1, 101))


class AclBroker(Mosquitto):
    """The test broker with users and the ACL file from docs/fleet.md."""

    def __init__(self, workdir: Path, acl: str) -> None:
        super().__init__(workdir, users={"kiosk-1": "k1-pass", "kiosk-2": "k2-pass", "lobby.1": "l1-pass",
                                         "dashboard": "d-pass"})
        self.acl = acl

    def _write_config(self) -> Path:
        config = super()._write_config()
        (self.workdir / "acl").write_text(self.acl)
        config.write_text(config.read_text() + f"acl_file {self.workdir / 'acl'}\n")
        return config


@pytest.fixture
def acl_broker(tmp_path: Path):
    with AclBroker(tmp_path / "acl-broker", block("acl")).start() as running:
        yield running


def test_acl_lets_a_kiosk_write_only_its_own_topics(acl_broker):
    dashboard = Subscriber(acl_broker.port, "edged/#", username="dashboard", password="d-pass")
    ha = Subscriber(acl_broker.port, "homeassistant/#", username="dashboard", password="d-pass")
    acks: dict[int, object] = {}
    done = threading.Condition()

    def on_publish(client, userdata, mid, reason, properties):
        with done:
            acks[mid] = reason
            done.notify_all()

    raw = paho.Client(CallbackAPIVersion.VERSION2, client_id="raw-kiosk-1", protocol=paho.MQTTv5)
    raw.username_pw_set("kiosk-1", "k1-pass")
    raw.on_publish = on_publish
    raw.connect("127.0.0.1", acl_broker.port)
    raw.loop_start()
    pub = publisher(acl_broker.port, "kiosk-1", discovery=True, username="kiosk-1", password="k1-pass")
    try:
        own = raw.publish("edged/kiosk-1/events", "own", qos=1).mid
        other = raw.publish("edged/kiosk-2/events", "not mine", qos=1).mid
        with done:
            assert done.wait_for(lambda: own in acks and other in acks, 5)
        assert not acks[own].is_failure
        assert str(acks[other]) == "Not authorized"

        assert pub.wait_connected(5)
        dashboard.wait_for(lambda ms: any(m.topic == "edged/kiosk-1/status" and m.text == "online" for m in ms),
                           what="kiosk-1 online")
        ha.wait_for(lambda ms: len(ms) == 3, what="kiosk-1's discovery configs")
        pub.close(timeout=1.0)
        dashboard.wait_for(lambda ms: ms[-1].topic == "edged/kiosk-1/status" and ms[-1].text == "offline",
                           what="kiosk-1 offline")
    finally:
        pub.close(timeout=0.5)
        raw.disconnect()
        raw.loop_stop()
        ha.close()
        dashboard.close()
    topics = {m.topic for m in dashboard.messages}
    assert "edged/kiosk-1/events" in topics and "edged/kiosk-2/events" not in topics
    assert {m.text for m in dashboard.on("edged/kiosk-1/events")} == {"own"}



def test_acl_matches_the_discovery_topics_of_a_device_id_with_replaced_characters(acl_broker):
    """lobby.1's node id is edged_lobby_1-<hash>: the docs' per-user line lets its discovery configs through."""
    ha = Subscriber(acl_broker.port, "homeassistant/#", username="dashboard", password="d-pass")
    pub = publisher(acl_broker.port, "lobby.1", discovery=True, username="lobby.1", password="l1-pass")
    try:
        assert pub.wait_connected(5)
        configs = ha.wait_for(lambda ms: len(ms) >= 3 and ms, what="lobby.1's discovery configs")
    finally:
        pub.close(timeout=1.0)
        ha.close()
    assert {m.topic.split("/")[2] for m in configs} == {pub._discovery.node}
    assert "Denied PUBLISH from edged-lobby.1" not in acl_broker.log()
