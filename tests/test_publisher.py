"""MqttPublisher end to end against a real Mosquitto: status and Last Will, events, state, stats, auth."""

from __future__ import annotations

import json
import logging
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mosquitto import USERS, Mosquitto, Subscriber, free_port, wait_until
from pydantic import SecretStr

from edged import __version__
from edged.faces import Track, TrackEvent
from edged.outbox import Outbox
from edged.payloads import Event, State, Stats
from edged.publisher import MqttPublisher, read_cpu_temp
from edged.settings import MqttSettings

REPO = Path(__file__).resolve().parent.parent
SCORES = {"angry": 0.05, "disgust": 0.0, "fear": 0.05, "happy": 0.7, "sad": 0.05, "surprise": 0.05, "neutral": 0.1}
STATS = {
    "fps": 14.8,
    "latency_ms": {s: {"p50": 1.5, "p95": 3.0} for s in ("decode", "detect", "classify", "track", "publish")},
    "frames": 300,
    "frames_dropped": 2,
    "faces_seen": 1,
    "queue_depth": 0,
    "uptime_s": 20.1,
}


def track(id_: int = 1, emotion: str = "happy", x: int = 10) -> Track:
    return Track(id=id_, box=(x, 20, 64, 64), scores=SCORES, emotion=emotion, first_seen_utc=1_700_000_000.0,
                 last_seen_utc=1_700_000_003.5)


@pytest.fixture
def make_publisher(tmp_path):
    """Builds publishers with fast reconnects; closes every one at the end of the test."""
    made: list[MqttPublisher] = []

    def make(port: int, device: str = "kiosk-1", password: str | None = None, **mqtt: object) -> MqttPublisher:
        settings = MqttSettings(host="127.0.0.1", port=port, reconnect_min_s=0.05, reconnect_max_s=0.2, **mqtt)
        pub = MqttPublisher(settings, device, SecretStr(password) if password else None, model_id="emotions-test",
                            version=__version__, thermal_path=tmp_path / "no-thermal-zone")
        made.append(pub)
        return pub

    yield make
    for pub in made:
        pub.close(timeout=1.0)


@pytest.fixture
def subscribers():
    made: list[Subscriber] = []

    def make(port: int, topic: str = "edged/#", **kw: str) -> Subscriber:
        made.append(Subscriber(port, topic, **kw))
        return made[-1]

    yield make
    for sub in made:
        sub.close()


def test_connect_publishes_retained_state_then_online(broker, make_publisher, subscribers):
    live = subscribers(broker.port)
    pub = make_publisher(broker.port)
    assert not pub.connected
    pub.start()
    assert pub.wait_connected(5)
    first_two = live.wait_for(lambda ms: ms[:2] if len(ms) >= 2 else None, what="state and status")
    assert [m.topic for m in first_two] == ["edged/kiosk-1/state", "edged/kiosk-1/status"]
    assert first_two[1].text == "online"
    state = State.model_validate_json(first_two[0].payload)
    assert (state.device, state.seq, state.faces) == ("kiosk-1", 1, [])

    late = subscribers(broker.port)  # joins afterwards: sees both as retained messages
    retained = late.wait_count("edged/kiosk-1/status", 1)
    assert retained[0].retain and retained[0].text == "online"
    assert late.wait_count("edged/kiosk-1/state", 1)[0].retain


def test_events_have_contiguous_seq_and_qos1(broker, make_publisher, subscribers):
    live = subscribers(broker.port, "edged/+/events")
    pub = make_publisher(broker.port)
    pub.start()
    assert pub.wait_connected(5)
    pub.event(TrackEvent("face_appeared", track(), 1_700_000_001.0))
    pub.event(TrackEvent("emotion_changed", track(emotion="sad"), 1_700_000_002.0, previous_emotion="happy"))
    for i in range(3):
        pub.event(TrackEvent("face_appeared", track(id_=10 + i), 1_700_000_003.0))
    pub.event(TrackEvent("face_left", track(), 1_700_000_004.0))

    messages = live.wait_count("edged/kiosk-1/events", 6)
    events = [Event.model_validate_json(m.payload) for m in messages]
    assert [e.seq for e in events] == [1, 2, 3, 4, 5, 6]
    assert all(m.qos == 1 and not m.retain for m in messages)
    assert (events[1].type, events[1].previous_emotion, events[1].emotion) == ("emotion_changed", "happy", "sad")
    assert (events[-1].type, events[-1].dwell_s) == ("face_left", 3.5)
    assert events[0].ts == "2023-11-14T22:13:21.000Z"


def test_state_is_throttled_but_sent_when_faces_change(broker, make_publisher, subscribers):
    live = subscribers(broker.port, "edged/+/state")
    pub = make_publisher(broker.port, state_interval_s=3600)  # only changes get through during the test
    pub.start()
    assert pub.wait_connected(5)
    pub.state([track()], 1_700_000_010.0)  # a face appears: sent
    pub.state([track(x=12)], 1_700_000_010.1)  # it moved a little: held back
    pub.state([track(x=12), track(id_=2)], 1_700_000_010.2)  # a second face: sent
    pub.state([track(x=14), track(id_=2, emotion="sad")], 1_700_000_010.3)  # an emotion changed: sent
    pub.state([track(x=16), track(id_=2, emotion="sad")], 1_700_000_010.4)  # held back, flushed by close()
    pub.close()

    states = [State.model_validate_json(m.payload) for m in live.wait_count("edged/kiosk-1/state", 5)]
    assert [s.seq for s in states] == [1, 2, 3, 4, 5]
    assert [[(f.track, f.box[0], f.emotion) for f in s.faces] for s in states] == [
        [],
        [(1, 10, "happy")],
        [(1, 12, "happy"), (2, 10, "happy")],
        [(1, 14, "happy"), (2, 10, "sad")],
        [(1, 16, "happy"), (2, 10, "sad")],
    ]
    assert states[-1].ts == "2023-11-14T22:13:30.400Z"


def test_stats_are_retained_with_version_model_and_temperature(broker, make_publisher, subscribers, tmp_path):
    pub = make_publisher(broker.port)
    pub._thermal_path.write_text("47500\n")  # the fixture's stand-in for /sys/class/thermal/thermal_zone0/temp
    live = subscribers(broker.port, "edged/+/stats")
    pub.start()
    assert pub.wait_connected(5)
    pub.stats(STATS)
    pub.stats({**STATS, "frames": 301})
    live.wait_count("edged/kiosk-1/stats", 2)  # both at the broker (QoS 0 has no ack to wait for)

    late = subscribers(broker.port, "edged/+/stats")
    message = late.wait_count("edged/kiosk-1/stats", 1)[0]
    assert message.retain
    stats = Stats.model_validate_json(message.payload)
    assert (stats.seq, stats.frames, stats.version, stats.model_id) == (2, 301, __version__, "emotions-test")
    assert stats.cpu_temp_c == 47.5
    assert stats.latency_ms.classify.p95 == 3.0


def test_cpu_temperature_is_null_without_a_thermal_zone(tmp_path):
    assert read_cpu_temp(tmp_path / "missing") is None
    stats = Stats(device="d", ts="2024-01-01T00:00:00Z", seq=1, version="0", model_id="m", cpu_temp_c=None, **STATS)
    assert json.loads(stats.to_json())["cpu_temp_c"] is None


def test_close_publishes_offline_and_disconnects(broker, make_publisher, subscribers):
    pub = make_publisher(broker.port)
    pub.start()
    assert pub.wait_connected(5)
    pub.close()
    assert not pub.connected
    status = subscribers(broker.port).wait_count("edged/kiosk-1/status", 1)[0]
    assert (status.text, status.retain) == ("offline", True)


KILLED = """
import sys, threading
from edged.publisher import MqttPublisher
from edged.settings import MqttSettings
pub = MqttPublisher(MqttSettings(host="127.0.0.1", port=int(sys.argv[1])), "doomed", None, "m", "0")
pub.start()
print("connected" if pub.wait_connected(10) else "not connected", flush=True)
threading.Event().wait()
"""


def test_last_will_offline_when_the_daemon_is_killed(broker, subscribers):
    live = subscribers(broker.port, "edged/doomed/status")
    child = subprocess.Popen([sys.executable, "-c", KILLED, str(broker.port)], cwd=REPO, stdout=subprocess.PIPE,
                             text=True)
    try:
        assert child.stdout.readline().strip() == "connected"
        live.wait_for(lambda ms: [m for m in ms if m.text == "online"], what="online")
        child.kill()  # SIGKILL: no DISCONNECT is sent, so the broker must publish the Last Will
        child.wait(5)
    finally:
        if child.poll() is None:
            child.kill()
        child.stdout.close()
    assert live.wait_for(lambda ms: ms[-1].text == "offline", what="Last Will offline")
    retained = subscribers(broker.port, "edged/doomed/status").wait_count("edged/doomed/status", 1)[0]
    assert (retained.text, retained.retain) == ("offline", True)


def test_reconnects_and_republishes_state_then_online(broker, make_publisher, subscribers, caplog):
    caplog.set_level(logging.INFO, logger="edged.publisher")
    pub = make_publisher(broker.port)
    pub.start()
    assert pub.wait_connected(5)
    pub.state([track()], 1_700_000_020.0)

    broker.stop()  # the new broker has no persistence: whatever it retains, the publisher sent again
    wait_until(lambda: not pub.connected, what="the publisher to notice")
    pub.state([track(), track(id_=2)], 1_700_000_021.0)  # while away: kept for the reconnect
    broker.start()
    wait_until(lambda: pub.connected, what="reconnection")

    late = subscribers(broker.port)
    assert late.wait_count("edged/kiosk-1/status", 1)[0].text == "online"
    state = State.model_validate_json(late.wait_count("edged/kiosk-1/state", 1)[0].payload)
    assert [f.track for f in state.faces] == [1, 2]
    assert state.seq == 3  # 1 on connect, 2 the first face, 3 on reconnect
    messages = [r.getMessage() for r in caplog.records]
    assert sum("lost the MQTT connection" in m for m in messages) == 1
    assert sum("is back" in m for m in messages) == 1


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_credentials_accepted(auth_broker, make_publisher, subscribers, protocol):
    pub = make_publisher(auth_broker.port, username="edged", password=USERS["edged"], protocol=protocol)
    pub.start()
    assert pub.wait_connected(5)
    assert pub.last_error is None
    watcher = subscribers(auth_broker.port, username="watcher", password=USERS["watcher"])
    assert watcher.wait_count("edged/kiosk-1/status", 1)[0].text == "online"


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_bad_password_is_refused_never_connected_and_logged_once(auth_broker, make_publisher, caplog, protocol):
    caplog.set_level(logging.INFO, logger="edged.publisher")
    pub = make_publisher(auth_broker.port, username="edged", password="wrong", protocol=protocol)
    pub.start()
    # paho keeps retrying; wait for several refusals at the broker
    wait_until(lambda: auth_broker.log().count("not authorised") >= 3, what="three refused attempts")
    assert not pub.connected
    assert "Bad user name or password" in pub.last_error or "Not authorized" in pub.last_error
    assert "EDGED_MQTT_PASSWORD" in pub.last_error
    refusals = [r for r in caplog.records if "refused the connection" in r.getMessage()]
    assert len(refusals) == 1 and refusals[0].levelno == logging.ERROR
    assert not any("connected to MQTT broker" in r.getMessage() for r in caplog.records)


def test_unreachable_broker_is_reported_not_connected(make_publisher):
    pub = make_publisher(free_port())
    pub.start()
    assert wait_until(lambda: pub.last_error, what="a connection failure").startswith("cannot reach MQTT broker")
    assert not pub.connected


class AclBroker(Mosquitto):
    """An anonymous broker whose ACL lets kiosk-1 write its status, state and stats, but not its events."""

    def _write_config(self) -> Path:
        config = super()._write_config()
        acl = self.workdir / "acl"
        acl.write_text("".join(f"topic readwrite edged/kiosk-1/{name}\n" for name in ("status", "state", "stats")))
        config.write_text(config.read_text() + f"acl_file {acl}\n")
        return config


def test_events_the_broker_refuses_leave_the_spool_and_are_counted(tmp_path, make_publisher, subscribers, caplog):
    with AclBroker(tmp_path / "acl-broker").start() as acl_broker:
        live = subscribers(acl_broker.port)
        pub = make_publisher(acl_broker.port)  # MQTT 5: a refused QoS 1 publish gets a PUBACK "Not authorized"
        pub.start()
        assert pub.wait_connected(5)
        with caplog.at_level(logging.ERROR, logger="edged.publisher"):
            for i in range(3):
                pub.event(TrackEvent("face_appeared", track(i + 1), 1_700_000_001.0))
            wait_until(lambda: pub.outbox_stats()["outbox_rejected"] == 3, what="three refusals counted")
        # Not retried forever (a refusal would come again): the drain thread removes them just after counting them,
        # so under load the backlog may read 3 for a moment (seen once in a full run on a busy machine).
        wait_until(lambda: pub.backlog == 0, what="the refused events gone from the spool")
        pub.stats(STATS)
        sent = live.wait_for(lambda ms: [m for m in ms if m.topic == "edged/kiosk-1/stats"], what="stats")
        stats = Stats.model_validate_json(sent[-1].payload)
        assert stats.outbox_rejected == 3 and stats.outbox_depth == 0
        assert not [m for m in live.messages if m.topic.endswith("/events")]
        refusals = [r for r in caplog.records if "rejected a message" in r.getMessage()]
        assert len(refusals) == 1 and "Not authorized" in refusals[0].getMessage()  # said once, not per event


def _spooling_publisher(port: int, device: str, box: Outbox, tmp_path: Path) -> MqttPublisher:
    settings = MqttSettings(host="127.0.0.1", port=port, reconnect_min_s=0.05, reconnect_max_s=0.2)
    return MqttPublisher(settings, device, None, model_id="m", version=__version__, outbox=box,
                         thermal_path=tmp_path / "none")


def test_a_renamed_device_sends_what_it_spooled_under_the_old_name_on_the_old_topic(broker, subscribers, tmp_path):
    state = tmp_path / "state"
    away = _spooling_publisher(free_port(), "old-name", Outbox.open(state, max_messages=100, max_bytes=10**6,
                                                                    max_age_s=3600), tmp_path)
    away.start()  # no broker there: the event waits in the spool
    away.event(TrackEvent("face_appeared", track(), 1_700_000_001.0))
    away.close(0.1)

    live = subscribers(broker.port, "edged/+/events")
    renamed = _spooling_publisher(broker.port, "new-name", Outbox.open(state, max_messages=100, max_bytes=10**6,
                                                                       max_age_s=3600), tmp_path)
    renamed.start()
    assert renamed.wait_connected(5)
    renamed.event(TrackEvent("face_left", track(), 1_700_000_002.0))
    old = Event.model_validate_json(live.wait_count("edged/old-name/events", 1)[0].payload)
    new = Event.model_validate_json(live.wait_count("edged/new-name/events", 1)[0].payload)
    renamed.close(1.0)
    assert (old.device, old.seq, old.type) == ("old-name", 1, "face_appeared")
    assert (new.device, new.seq, new.type) == ("new-name", 2, "face_left")  # the spool's counter goes on


def test_events_spooled_before_the_topic_was_recorded_go_to_their_own_devices_topic(broker, subscribers, tmp_path):
    """An outbox of schema 1 (no mqtt_topic) is upgraded in place; its events go to the topic of their payload."""
    state = tmp_path / "state"
    state.mkdir()
    db = sqlite3.connect(state / "outbox.sqlite3")
    db.executescript("""
        CREATE TABLE messages (id INTEGER PRIMARY KEY AUTOINCREMENT, topic TEXT NOT NULL, seq INTEGER NOT NULL,
                               created REAL NOT NULL, payload TEXT NOT NULL);
        CREATE TABLE seqs (topic TEXT PRIMARY KEY, seq INTEGER NOT NULL);
        PRAGMA user_version=1;""")
    spooled = Event.from_track_event(TrackEvent("face_appeared", track(), 1_700_000_001.0), "before-rename", 7)
    db.execute("INSERT INTO messages (topic, seq, created, payload) VALUES ('events', 7, ?, ?)",
               (time.time(), spooled.to_json()))
    db.execute("INSERT INTO seqs VALUES ('events', 7)")
    db.commit()
    db.close()
    live = subscribers(broker.port, "edged/+/events")
    pub = _spooling_publisher(broker.port, "after-rename", Outbox.open(state, max_messages=100, max_bytes=10**6,
                                                                       max_age_s=3600), tmp_path)
    pub.start()
    sent = Event.model_validate_json(live.wait_count("edged/before-rename/events", 1)[0].payload)
    wait_until(lambda: pub.backlog == 0, what="the acknowledgement")
    pub.close(1.0)
    assert (sent.device, sent.seq) == ("before-rename", 7)


def test_the_latest_stats_go_out_right_after_connecting(broker, make_publisher, subscribers):
    """Figures given while disconnected are kept and sent on connecting, after state and online: Home Assistant's
    frame rate then has a value at once, not one stats interval (10 s) later."""
    live = subscribers(broker.port)
    pub = make_publisher(broker.port, stats_interval_s=3600)
    pub.stats(STATS)  # the pipeline's first figures, before the broker answered
    pub.start()
    first = live.wait_for(lambda ms: ms[:3] if len(ms) >= 3 else None, what="state, status and stats")
    assert [m.topic.rsplit("/", 1)[1] for m in first] == ["state", "status", "stats"]
    stats = Stats.model_validate_json(first[2].payload)
    assert (stats.frames, stats.mqtt_disconnects, stats.mqtt_takeovers, stats.mqtt_too_large) == (300, 0, 0, 0)
