"""The broker's limits and a shared client id, each against a real Mosquitto configured to reproduce it: what a
subscriber receives, what the publisher counts and what the log says (edged/brokerlink.py, edged/publisher.py)."""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from media import ROOT, SAMPLE_CLIP, require_model
from mosquitto import Mosquitto, Subscriber, wait_until
from paho.mqtt.enums import CallbackAPIVersion

from edged import __version__
from edged.brokerlink import Drop, LinkMonitor, message_sizes, publish_size
from edged.faces import Track, TrackEvent
from edged.outbox import Outbox
from edged.payloads import Event
from edged.pipeline import STAGES
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
        assert pub.link.disconnects == 3 and pub.link.refused == big and pub.link.limit == big - 1
        messages = [r.getMessage() for r in caplog.records]
        assert sum("dropped the connection 3 times, each right after receiving a message of" in m and
                   "(the smallest: event seq 2)" in m for m in messages) == 1
        largest = max(message_sizes(pub._mqtt, "kiosk-1").values())
        assert sum(f"refused a message of {big} bytes" in m and f"event seq 2 is {big} bytes" in m and
                   f"to at least {largest}, edged's largest message (its state with 8 faces)" in m
                   for m in messages) == 1
        live.close()


FIGURES = {"fps": 15.0, "latency_ms": {s: {"p50": 1.0, "p95": 2.0} for s in STAGES}, "frames": 1,
           "frames_dropped": 0, "faces_seen": 1, "queue_depth": 0, "uptime_s": 1.0}


class Kiosk:
    """Drives a publisher as the daemon's pipeline does: a state with one or two moving faces every `every` s (QoS 0,
    sent at once when the faces change) and stats every fifth time."""

    def __init__(self, pub: MqttPublisher, every: float = 0.05) -> None:
        self.pub, self.every = pub, every
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        n = 0
        while not self.stop.wait(self.every):
            n += 1
            faces = [track(1), *([track(2)] if n % 20 < 10 else [])]
            self.pub.state(faces, 1_700_000_000.0 + n)
            if n % 5 == 0:
                self.pub.stats({**FIGURES, "frames": n})

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)


@pytest.mark.parametrize("wait", [0.05, 1.0], ids=["refused-meanwhile", "back-before-the-retry"])
@pytest.mark.parametrize("protocol", ["3.1.1", "5"])
def test_a_restarting_broker_teaches_no_limit(broker, publishers, caplog, protocol, wait):
    """A broker with no limit restarted 4 times while edged publishes state and stats: the connection drops right
    after QoS 0 messages nobody acknowledges, but that is no evidence of a size limit. The retry either meets a
    broker that is still away, or (a wait longer than the restart) a fresh one."""
    live = Subscriber(broker.port, "edged/kiosk-1/stats")
    pub = publishers(broker.port, protocol=protocol, reconnect_min_s=wait, reconnect_max_s=max(wait, 0.4))
    with caplog.at_level(logging.INFO, logger="edged.publisher"):
        pub.start()
        kiosk = Kiosk(pub)
        try:
            for restart in range(1, 5):
                wait_until(lambda n=restart: pub.connected and pub.link.disconnects == n - 1, timeout=15,
                           what="a connection")
                live.wait_count("edged/kiosk-1/stats", 2 * restart, timeout=10)  # stats flow on every connection
                broker.stop()
                broker.start()
            wait_until(lambda: pub.connected, timeout=15, what="the last connection")
            live.close()
            live = Subscriber(broker.port, "edged/kiosk-1/stats")
            fresh = live.wait_count("edged/kiosk-1/stats", 2, timeout=10)  # still sent after the restarts
        finally:
            kiosk.close()
            live.close()
    messages = "\n".join(r.getMessage() for r in caplog.records)
    assert "max_packet_size" not in messages and "larger than the broker accepts" not in messages, messages
    assert json.loads(fresh[-1].payload)["mqtt_too_large"] == 0
    assert pub.link.limit is None and pub.link.refused is None and pub.link.disconnects == 4


def test_a_learned_limit_is_kept_across_restarts_and_dropped_when_the_broker_takes_more(tmp_path, caplog):
    """MQTT 3.1.1, max_packet_size 300, no advertised limit: the bound is what the broker refused (315 bytes), not a
    guess, and the advice is edged's largest message. The bound is kept in the outbox for the broker's address, so
    the next start sends nothing that large (no drop at all); when the broker comes back without the limit, one
    larger stats is tried and, acknowledged, the bound is forgotten."""
    big = sizes(mqtt5=False)[1]
    state = tmp_path / "state"
    made: list[MqttPublisher] = []

    def publisher(port: int) -> MqttPublisher:
        settings = MqttSettings(host="127.0.0.1", port=port, protocol="3.1.1", reconnect_min_s=0.05,
                                reconnect_max_s=0.4)
        box = Outbox.open(state, max_messages=1000, max_bytes=10**6, max_age_s=3600)
        made.append(MqttPublisher(settings, "kiosk-1", None, "m", __version__, outbox=box,
                                  thermal_path=tmp_path / "none"))
        made[-1].start()
        return made[-1]

    with limited_broker(tmp_path, "max_packet_size 300") as broker, caplog.at_level(logging.INFO, "edged.publisher"):
        live = Subscriber(broker.port, EVENTS)
        try:
            first = publisher(broker.port)
            for event in THREE:
                first.event(event)
            wait_until(lambda: first.backlog == 0, timeout=15, what="the spool to empty")
            assert first.link.refused == big and first.link.disconnects == 3
            first.stats(FIGURES)  # ~700 bytes: above the bound, not sent
            assert first.link_stats()["mqtt_too_large"] == 2
            first.close(1.0)

            second = publisher(broker.port)  # a restart of the daemon: the bound is read back
            assert second.link.refused == big
            assert second.wait_connected(5)
            second.event(THREE[1])  # seq 4, as large as seq 2: rejected at once
            second.event(THREE[2])  # seq 5
            second.stats(FIGURES)
            wait_until(lambda: second.backlog == 0, timeout=15, what="the spool to empty")
            assert second.link.disconnects == 0 and second.outbox_stats()["outbox_rejected"] == 1

            broker.extra = ()  # the operator raises the limit and restarts the broker
            broker.stop()
            wait_until(lambda: second.last_error, timeout=10, what="the broker to be away")
            broker.start()
            wait_until(lambda: second.link.refused is None, timeout=15, what="the bound to be dropped")
            before = {Event.model_validate_json(m.payload).seq for m in live.on(EVENTS)}
            live.close()
            live = Subscriber(broker.port, EVENTS)  # the restarted broker forgot the subscription
            second.event(THREE[1])  # seq 6: sent now
            after = live.wait_count(EVENTS, 1)
        finally:
            live.close()
            for pub in made:
                pub.close(1.0)
    assert before == {1, 3, 5} and [Event.model_validate_json(m.payload).seq for m in after] == [6]
    messages = [r.getMessage() for r in caplog.records]
    assert sum("the limit learned from its drops no longer holds" in m for m in messages) == 1, messages
    box = Outbox.open(state, max_messages=1000, max_bytes=10**6, max_age_s=3600)
    try:
        assert box.refused_size(f"127.0.0.1:{broker.port}") is None
        box.set_refused_size("127.0.0.1:1", 315)
        assert box.refused_size("127.0.0.1:1") == 315
        assert box.refused_size("broker.local:1883") is None  # another broker: forgotten
        assert box.refused_size("127.0.0.1:1") is None
    finally:
        box.close()


def daemon(state_dir: Path, port: int, device: str, **env: str) -> subprocess.Popen[str]:
    """`edged run` on the sample clip (12 s, in real time), publishing to 127.0.0.1:`port`; logs on stderr."""
    clean = {k: v for k, v in os.environ.items() if not k.upper().startswith("EDGED_")}
    settings = {"EDGED_MODEL__PATH": str(require_model()), "EDGED_CAMERA__SOURCE": str(SAMPLE_CLIP),
                "EDGED_MQTT__HOST": "127.0.0.1", "EDGED_MQTT__PORT": str(port), "EDGED_DEVICE_ID": device,
                "EDGED_STATE_DIR": str(state_dir), **env}
    return subprocess.Popen([sys.executable, "-m", "edged", "run"], env={**clean, **settings}, cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def finish(daemons: list[subprocess.Popen[str]]) -> list[str]:
    """Wait for daemons (the clip ends them), killing any left; their logs."""
    logs = []
    for proc in daemons:
        try:
            logs.append(proc.communicate(timeout=60)[1])
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    return logs


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_two_daemons_with_one_id_are_told_and_back_off(broker, tmp_path, protocol):
    """Cloned kiosks: two real daemons with one device id, so one client id, each publishing state (QoS 0, every
    0.5 s while faces move) and stats as it runs the clip. Each is told once, naming the id and the variables, counts
    the takeovers in its stats and reconnects with a growing wait instead of flapping at the minimum. (A broker that
    sends MQTT 5's reason "Session taken over" is recognised at the first drop: LinkMonitor's test.)"""
    live = Subscriber(broker.port, "edged/raspberrypi/#")
    fast = {"EDGED_MQTT__PROTOCOL": protocol, "EDGED_MQTT__RECONNECT_MIN_S": "0.05",
            "EDGED_MQTT__RECONNECT_MAX_S": "0.4", "EDGED_MQTT__STATS_INTERVAL_S": "1"}
    clones = [daemon(tmp_path / f"state-{i}", broker.port, "raspberrypi", **fast) for i in (1, 2)]
    try:
        logs = finish(clones)
    finally:
        live.close()
    assert [c.returncode for c in clones] == [0, 0], logs
    for log in logs:
        errors = [line for line in log.splitlines() if "is in use by another client" in line]
        assert len(errors) == 1, log  # said once per daemon
        assert "'edged-raspberrypi'" in errors[0] and "EDGED_DEVICE_ID" in errors[0]
        assert "EDGED_MQTT__CLIENT_ID" in errors[0]
        # Mosquitto 2.0.11 closes the socket without MQTT 5's "Session taken over": the pattern tells, either protocol
        assert "closed the connection soon after connecting 3 times in a row" in errors[0]
        assert "larger than the broker accepts" not in log and "max_packet_size" not in log, log
    stats = [json.loads(m.payload) for m in live.on("edged/raspberrypi/stats")]
    assert max(s["mqtt_takeovers"] for s in stats) >= 1 and all(s["mqtt_too_large"] == 0 for s in stats)


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
    assert link.dropped("Unspecified error") == Drop(suspect="stats") and link.limit is None


def test_link_monitor_weighs_the_evidence_for_a_size_limit():
    """A suspect is a message sent just before the drop, larger than anything confirmed; a drop counts against it
    only when the broker takes the client back at once; three teach an upper bound, an acknowledgement of that size
    takes it back."""
    now = [0.0]
    link = LinkMonitor(1.0, 60.0, clock=lambda: now[0], probe_interval_s=100.0)

    def drop_after(key: str, size: int, mid: int | None = None, gap: float = 0.01) -> Drop:
        link.sent(key, size, mid)
        now[0] += gap
        return link.dropped("Unspecified error")

    link.connected(None)
    link.sent("state", 700, None)
    link.sent("confirm", 0, 1)
    link.acked(1)  # the broker read the 700-byte state
    assert link.accepted == 700 and not link.wants_confirmation(650) and link.wants_confirmation(900)
    assert drop_after("stats", 650) == Drop()  # not larger than what the broker took: no suspect
    link.connected(None)
    assert drop_after("stats", 900, gap=5.0) == Drop()  # sent long before the drop: not what closed it
    link.connected(None)
    assert drop_after("stats", 900) == Drop(suspect="stats")
    link.connect_failed()  # the broker was away: a restart explains the drop
    assert link.connected(None) is None and link.accepted == 0
    for size in (900, 910):
        assert drop_after("stats", size) == Drop(suspect="stats")
        assert link.connected(None) is None  # a strike each; not yet a conclusion
    now[0] += 601.0  # strikes that long ago are no pattern with the next ones
    for size in (920, 930):
        assert drop_after("stats", size) == Drop(suspect="stats")
        assert link.connected(None) is None
    assert drop_after("event seq 9", 880, mid=5) == Drop(suspect="event seq 9")
    refusal = link.connected(None)
    assert refusal is not None and (refusal.key, refusal.size, refusal.strikes) == ("event seq 9", 880, 3)
    assert link.refused == 880 and link.limit == 879 and not link.fits(880) and link.fits(879)
    assert drop_after("state", 850) == Drop(suspect="state")  # with a bound known, one more strike lowers it
    assert link.connected(None).size == 850 and link.refused == 850
    assert link.probe(900)  # due since the broker was away: it may have been reconfigured
    assert not link.probe(900) and not link.probe(800)  # again only after probe_interval_s; 800 fits anyway
    now[0] += 100.0
    assert link.probe(900) and not link.probe(900)
    link.sent("stats", 900, None)
    assert link.sent("confirm", 0, 9) is None
    assert link.acked(9) == 850 and link.refused is None and link.limit is None  # the bound no longer holds


def test_link_monitor_does_not_take_a_restarting_broker_for_a_takeover():
    now = [0.0]
    link = LinkMonitor(1.0, 60.0, clock=lambda: now[0])
    for _ in range(5):  # short connections, each ended by a broker that then could not be reached for a moment
        link.connected(None)
        now[0] += 2.0
        assert not link.dropped("Unspecified error").takeover
        link.connect_failed()
    assert link.takeovers == 0 and link.backoff_s == 1.0
