"""The broker's limits and a shared client id, each against a real Mosquitto configured to reproduce it: what a
subscriber receives, what the publisher counts and what the log says (edged/brokerlink.py, edged/publisher.py)."""

from __future__ import annotations

import logging
import socket
import threading
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from mosquitto import Mosquitto, Subscriber, wait_until
from paho.mqtt.enums import CallbackAPIVersion

from edged import __version__
from edged.brokerlink import Drop, LinkMonitor, publish_size
from edged.faces import Track, TrackEvent
from edged.payloads import Event
from edged.publisher import MqttPublisher
from edged.settings import MqttSettings

SCORES = {"angry": 0.05, "disgust": 0.0, "fear": 0.05, "happy": 0.7, "sad": 0.05, "surprise": 0.05, "neutral": 0.1}
EVENTS = "edged/kiosk-1/events"


def track(id_: int = 1) -> Track:
    return Track(id=id_, box=(10, 20, 64, 64), scores=SCORES, emotion="happy", first_seen_utc=1_700_000_000.0,
                 last_seen_utc=1_700_000_003.5)


# An event that fits, one that does not (emotion_changed carries previous_emotion: ~30 bytes more), one that fits.
THREE = [TrackEvent("face_appeared", track(1), 1_700_000_001.0),
         TrackEvent("emotion_changed", track(1), 1_700_000_002.0, previous_emotion="neutral"),
         TrackEvent("face_appeared", track(2), 1_700_000_003.0)]


def sizes(mqtt5: bool) -> list[int]:
    return [publish_size(EVENTS, Event.from_track_event(e, "kiosk-1", i + 1).to_json(), 1, mqtt5)
            for i, e in enumerate(THREE)]


@pytest.fixture
def publishers(tmp_path):
    made: list[MqttPublisher] = []

    def make(port: int, device: str = "kiosk-1", **mqtt: object) -> MqttPublisher:
        settings = MqttSettings(host="127.0.0.1", port=port, **{"reconnect_min_s": 0.05, "reconnect_max_s": 0.4,
                                                                 **mqtt})
        pub = MqttPublisher(settings, device, None, model_id="m", version=__version__,
                            thermal_path=tmp_path / "none")
        made.append(pub)
        return pub

    yield make
    for pub in made:
        pub.close(timeout=1.0)


def limited_broker(tmp_path: Path, line: str) -> Mosquitto:
    return Mosquitto(tmp_path / "limited", extra=(line,)).start()


@pytest.mark.parametrize("protocol", [paho.MQTTv5, paho.MQTTv311])
def test_publish_size_is_what_the_broker_measures(tmp_path, protocol):
    """A packet of exactly max_packet_size bytes, as MQTT 5 counts them (the whole packet), passes; a few bytes
    more close the connection. (Mosquitto 2.0.11 compares the remaining length, 2-3 bytes less than the whole
    packet, so what edged counts is on the safe side.)"""
    limit = 300
    with limited_broker(tmp_path, f"max_packet_size {limit}") as broker:
        outcome: list[str] = []
        done = threading.Event()
        client = paho.Client(CallbackAPIVersion.VERSION2, client_id="sizer", protocol=protocol)
        client.on_publish = lambda c, u, mid, rc, p: (outcome.append(f"acked {mid}"), done.set())
        client.on_disconnect = lambda c, u, f, rc, p: (outcome.append("dropped"), done.set())
        client.connect("127.0.0.1", broker.port)
        client.loop_start()
        try:
            mqtt5 = protocol == paho.MQTTv5
            n = limit - publish_size("t/size", b"", 1, mqtt5)
            while publish_size("t/size", "x" * n, 1, mqtt5) > limit:  # the length field grew by a byte
                n -= 1
            fits = "x" * n
            assert publish_size("t/size", fits, 1, mqtt5) == limit
            info = client.publish("t/size", fits, qos=1)
            wait_until(done.is_set, what="an answer")
            assert outcome == [f"acked {info.mid}"]
            done.clear()
            client.publish("t/size", fits + "xxx", qos=1)
            wait_until(done.is_set, what="an answer")
            assert outcome[-1] == "dropped"
        finally:
            client.disconnect()
            client.loop_stop()


def test_mqtt5_advertised_limit_rejects_what_cannot_fit_without_a_reconnect(tmp_path, publishers, caplog):
    small, big, _ = sizes(mqtt5=True)
    assert small < big
    with limited_broker(tmp_path, f"max_packet_size {small + 5}") as broker:
        live = Subscriber(broker.port, "edged/#")
        pub = publishers(broker.port)
        with caplog.at_level(logging.INFO, logger="edged.publisher"):
            pub.start()
            assert pub.wait_connected(5)
            assert pub.link.advertised == small + 5
            for event in THREE:
                pub.event(event)
            received = live.wait_count(EVENTS, 2)
            wait_until(lambda: pub.backlog == 0, what="the spool to empty")
            pub.stats({"fps": 1.0, "latency_ms": {s: {"p50": 1, "p95": 1} for s in
                                                  ("decode", "detect", "classify", "track", "publish")},
                       "frames": 1, "frames_dropped": 0, "faces_seen": 2, "queue_depth": 0, "uptime_s": 1.0})
        assert [Event.model_validate_json(m.payload).seq for m in received] == [1, 3]  # 2 is a gap: rejected
        assert pub.outbox_stats()["outbox_rejected"] == 1
        assert pub.link.disconnects == 0 and pub.connected  # never a reconnect loop
        assert pub.link_stats()["mqtt_too_large"] == 2  # the event, and the stats (~800 bytes) skipped
        assert not live.on("edged/kiosk-1/stats")
        errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
        assert len(errors) == 2, errors  # one for events, one for stats: said once per kind
        assert f"at most {small + 5} bytes (its Maximum Packet Size); event seq 2 is {big} bytes" in errors[0]
        assert "max_packet_size" in errors[0] and "outbox_rejected" in errors[0]
        assert broker.log().count("New client connected") == 2  # the subscriber and the publisher, once each
        live.close()


@pytest.mark.parametrize(("protocol", "line"), [("3.1.1", "max_packet_size"), ("5", "message_size_limit")])
def test_a_drop_after_one_message_is_recognised_and_the_message_rejected(tmp_path, publishers, caplog, protocol,
                                                                          line):
    """No advertised limit: MQTT 3.1.1, or MQTT 5 with Mosquitto's message_size_limit. The broker only closes the
    connection; after a few drops on the same message edged takes it as too large, rejects it and goes on."""
    small, big, _ = sizes(mqtt5=protocol == "5")
    payload = len(Event.from_track_event(THREE[1], "kiosk-1", 2).to_json())
    limit = small + 5 if line == "max_packet_size" else payload - 10  # message_size_limit counts the payload
    with limited_broker(tmp_path, f"{line} {limit}") as broker:
        live = Subscriber(broker.port, EVENTS)
        pub = publishers(broker.port, protocol=protocol)
        with caplog.at_level(logging.INFO, logger="edged.publisher"):
            pub.start()
            assert pub.wait_connected(5)
            for event in THREE:
                pub.event(event)
            wait_until(lambda: pub.backlog == 0, timeout=15, what="the spool to empty")
        # seq 1 may come more than once: the broker's PUBACK can be lost with the connection it closes
        seqs = live.wait_for(lambda ms: {Event.model_validate_json(m.payload).seq for m in ms} >= {1, 3} and
                             [Event.model_validate_json(m.payload).seq for m in ms], what="events 1 and 3")
        assert set(seqs) == {1, 3}
        assert pub.outbox_stats()["outbox_rejected"] == 1
        assert pub.link.disconnects == 3 and pub.link.learned == big - 1
        messages = [r.getMessage() for r in caplog.records]
        assert sum("dropped the connection 3 times right after receiving event seq 2" in m for m in messages) == 1
        assert sum("event seq 2 is" in m and "what it took before dropping the connection" in m for m in messages) == 1
        live.close()


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_two_clients_with_one_id_are_told_and_back_off(broker, publishers, caplog, protocol):
    """Cloned kiosks: one device id, so one client id. Each is told once, naming the id and the variables, and
    reconnects with a growing wait instead of flapping at the minimum (a broker that sends MQTT 5's reason
    "Session taken over" is recognised at the first drop: LinkMonitor's test)."""
    with caplog.at_level(logging.INFO, logger="edged.publisher"):
        first, second = publishers(broker.port, protocol=protocol), publishers(broker.port, protocol=protocol)
        first.start()
        assert first.wait_connected(5)
        second.start()
        wait_until(lambda: first.link.takeovers + second.link.takeovers >= 6, timeout=30, what="takeovers")
    for pub in (first, second):
        assert pub.link_stats()["mqtt_takeovers"] == pub.link.takeovers
    assert max(first.link.backoff_s, second.link.backoff_s) >= 0.2  # doubled from 0.05 at least twice
    errors = [r.getMessage() for r in caplog.records if "is in use by another client" in r.getMessage()]
    assert 1 <= len(errors) <= 2, errors  # once per publisher at most
    assert "'edged-kiosk-1'" in errors[0] and "EDGED_DEVICE_ID" in errors[0] and "EDGED_MQTT__CLIENT_ID" in errors[0]
    # Mosquitto 2.0.11 closes the socket without MQTT 5's "Session taken over": the pattern tells, with both protocols
    assert "closed the connection soon after connecting 3 times in a row" in errors[0]


class SilentServer:
    """A TCP listener that accepts and never says a word (not MQTT)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.port = self.sock.getsockname()[1]
        self.accepted: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                self.accepted.append(self.sock.accept()[0])
            except OSError:
                return

    def close(self) -> None:
        self.sock.close()
        for conn in self.accepted:
            conn.close()


def test_a_port_that_never_answers_connect_is_reported(publishers, caplog):
    server = SilentServer()
    try:
        with caplog.at_level(logging.ERROR, logger="edged.publisher"):
            pub = publishers(server.port, keepalive=5)
            pub.start()
            error = wait_until(lambda: pub.last_error, timeout=20, what="the missing CONNACK to be reported")
        assert "accepted the TCP connection but sent no CONNACK within 5 s (EDGED_MQTT__KEEPALIVE)" in error
        assert "EDGED_MQTT__TLS=true" in error and not pub.connected
        assert [r.getMessage() for r in caplog.records] == [error]
    finally:
        server.close()


def test_link_monitor_takes_mqtt5_session_taken_over_at_once_and_calms_down_after_a_long_connection():
    now = [0.0]
    link = LinkMonitor(1.0, 60.0, clock=lambda: now[0])
    for expected in (2.0, 4.0, 8.0):
        link.connected(None)
        now[0] += 1.0
        assert link.dropped("Session taken over").explicit and link.backoff_s == expected
    link.connected(None)
    now[0] += 121.0  # a connection that outlasted two longest waits: the conflict is over
    assert link.dropped("Unspecified error") == Drop() and link.backoff_s == 1.0
    link.connected(None)
    link.sent("state", 900, None)
    link.sent("status", 30, 7)
    link.acked(7)  # everything up to the PUBACK arrived: the state cannot be what closed the connection
    link.sent("stats", 1200, None)
    assert link.dropped("Unspecified error").strikes == 1 and link.limit is None


def test_link_monitor_does_not_take_a_restarting_broker_for_a_takeover():
    now = [0.0]
    link = LinkMonitor(1.0, 60.0, clock=lambda: now[0])
    for _ in range(5):  # short connections, each ended by a broker that then could not be reached for a moment
        link.connected(None)
        now[0] += 2.0
        assert not link.dropped("Unspecified error").takeover
        link.connect_failed()
    assert link.takeovers == 0 and link.backoff_s == 1.0
