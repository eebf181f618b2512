"""`edged watch` on real MQTT traffic: the live table, JSON snapshots, and `--once` for scripts."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import threading
import time

import pytest
from media import ROOT
from mosquitto import Subscriber, wait_until
from rich.console import Console
from test_publisher import STATS, track

from edged import __version__
from edged.faces import TrackEvent
from edged.fleet import STARTUP_GRACE_S, FleetView
from edged.publisher import MqttPublisher
from edged.settings import MqttSettings
from edged.watch import Feed, render, watch


@pytest.fixture
def watching(broker):
    """`watch()` running in a thread against the broker; yields its FleetView and a function that stops it."""
    view, stop, out = FleetView("edged"), threading.Event(), io.StringIO()
    console = Console(file=out, width=160, force_terminal=False)
    thread = threading.Thread(
        target=watch, args=(MqttSettings(host="127.0.0.1", port=broker.port), None, view, stop),
        kwargs={"console": console, "refresh_s": 0.05}, daemon=True,
    )
    thread.start()
    # watch() subscribes asynchronously; a retained marker tells us when it is listening
    marker = Subscriber(broker.port, "unused")
    marker.publish("edged/marker/status", "online", retain=True)
    wait_until(lambda: "marker" in view.devices, what="watch to subscribe")
    marker.publish("edged/marker/status", b"", retain=True)  # clear it again
    marker.close()
    wait_until(lambda: "marker" not in view.devices, what="the cleared marker to retire its device")

    def finish() -> str:
        """Stop watch() and return what it drew (a console that is not a terminal gets the last frame)."""
        stop.set()
        thread.join(5)
        assert not thread.is_alive(), "watch() did not return after stop was set"
        return out.getvalue()

    yield view, finish
    finish()


def publisher(port: int, device: str) -> MqttPublisher:
    settings = MqttSettings(host="127.0.0.1", port=port, state_interval_s=0)
    pub = MqttPublisher(settings, device, None, model_id="emotions-test", version=__version__)
    pub.start()
    assert pub.wait_connected(5)
    return pub


def test_watch_shows_devices_faces_events_and_the_offline_alert(broker, watching):
    view, finish = watching
    pub = publisher(broker.port, "kiosk-1")
    pub.event(TrackEvent("face_appeared", track(), 1_700_000_001.0))
    pub.event(TrackEvent("emotion_changed", track(emotion="sad"), 1_700_000_002.0, previous_emotion="happy"))
    pub.state([track(emotion="sad"), track(id_=2)], 1_700_000_002.0)
    pub.stats(STATS)

    wait_until(lambda: view.devices.get("kiosk-1") and view.devices["kiosk-1"].fps == STATS["fps"]
               and len(view.events) == 2 and len(view.devices["kiosk-1"].faces) == 2, what="the fleet view")
    device = view.devices["kiosk-1"]
    assert device.status == "online"
    assert [(f.track, f.emotion) for f in device.faces] == [(1, "sad"), (2, "happy")]
    assert [e.type for e in view.events] == ["emotion_changed", "face_appeared"]  # newest first
    assert device.events_lost == 0 and view.rejected == 0
    assert [a.kind for a in view.alerts(1_700_000_003.0)] == []

    pub.close()
    wait_until(lambda: view.devices["kiosk-1"].status == "offline", what="offline")
    assert [(a.device, a.kind) for a in view.alerts(1_700_000_003.0)] == [("kiosk-1", "offline")]
    drawn = finish()
    assert "kiosk-1" in drawn and "offline" in drawn and "happy -> sad" in drawn
    assert "happy 50% sad 50%" in drawn  # the emotion mix column: appeared happy, changed to sad


def test_watch_json_prints_snapshots(broker):
    pub = publisher(broker.port, "kiosk-j")
    pub.stats(STATS)
    out, stop = io.StringIO(), threading.Event()
    view = FleetView("edged")
    thread = threading.Thread(target=watch, args=(MqttSettings(host="127.0.0.1", port=broker.port), None, view, stop),
                              kwargs={"console": Console(file=out), "refresh_s": 0.05, "as_json": True}, daemon=True)
    thread.start()
    try:
        wait_until(lambda: '"fps": 14.8' in out.getvalue() or '"fps":14.8' in out.getvalue(), what="a JSON snapshot")
    finally:
        stop.set()
        thread.join(5)
        pub.close()
    snapshot = json.loads(out.getvalue().splitlines()[-1])
    assert snapshot["devices"]["kiosk-j"]["status"] == "online" and snapshot["alerts"] == []


def _watch_once(port: int) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.upper().startswith("EDGED_")}
    env = {**clean, "EDGED_MQTT__HOST": "127.0.0.1", "EDGED_MQTT__PORT": str(port)}
    return subprocess.run([sys.executable, "-m", "edged", "watch", "--once", "--json", "--wait", "0.5"], env=env,
                          cwd=ROOT, capture_output=True, text=True, timeout=60)


def test_watch_once_exits_1_on_alerts(broker):
    healthy = publisher(broker.port, "kiosk-a")
    leaving = publisher(broker.port, "kiosk-b")
    healthy.state([track()], time.time())
    try:
        result = _watch_once(broker.port)
        assert result.returncode == 0, result.stderr
        snapshot = json.loads(result.stdout)
        assert {name: d["status"] for name, d in snapshot["devices"].items()} == {"kiosk-a": "online",
                                                                                  "kiosk-b": "online"}
        assert snapshot["devices"]["kiosk-a"]["faces"] == 1 and snapshot["alerts"] == []

        leaving.close()  # retained `offline` now
        result = _watch_once(broker.port)
        assert result.returncode == 1, result.stderr
        assert json.loads(result.stdout)["alerts"] == [{"device": "kiosk-b", "kind": "offline",
                                                        "detail": json.loads(result.stdout)["alerts"][0]["detail"]}]
    finally:
        healthy.close()
        leaving.close()


def test_watch_once_says_when_the_broker_is_away():
    clean = {k: v for k, v in os.environ.items() if not k.upper().startswith("EDGED_")}
    env = {**clean, "EDGED_MQTT__HOST": "127.0.0.1", "EDGED_MQTT__PORT": "1"}
    result = subprocess.run([sys.executable, "-m", "edged", "watch", "--once", "--wait", "0.1"], env=env, cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 69 and "127.0.0.1:1" in result.stderr


def test_render_without_devices():
    console = Console(file=io.StringIO(), width=100)
    console.print(render(FleetView("edged"), "127.0.0.1:1883 edged/+/#"))
    assert "devices" in console.file.getvalue() and "0 devices, 0 online" in console.file.getvalue()


def deep_json(levels: int = 1200) -> bytes:
    """About 2.4 KB nested `levels` deep: json.loads raises RecursionError on it."""
    return b'{"v": 1, "device": "x", "fps": ' + b"[" * levels + b"]" * levels + b"}"


def test_a_malformed_payload_of_any_shape_is_counted_and_never_stops_the_view(broker, watching):
    view, finish = watching
    pub = publisher(broker.port, "kiosk-1")
    hostile = Subscriber(broker.port, "unused")
    bomb = deep_json()
    assert len(bomb) < 2500
    for payload in (bomb, b"\xff\xfe not utf-8", b"[1, 2]", b'{"v": 1}', b"null"):
        hostile.publish("edged/kiosk-1/stats", payload)
    hostile.publish("edged/kiosk-1/status", "maybe")
    wait_until(lambda: view.devices["kiosk-1"].malformed == 6, what="six malformed messages counted")
    pub.stats(STATS)  # the view is still alive: a good message after the bad ones is folded in
    wait_until(lambda: view.devices["kiosk-1"].fps == STATS["fps"], what="the next good stats")
    hostile.close()
    pub.close()
    drawn = finish()
    assert view.devices["kiosk-1"].last_malformed == "status 'maybe' is neither online nor offline"
    assert "6 malformed messages" in drawn


def test_watch_once_counts_a_retained_deep_json_message_and_goes_on(broker):
    """--once after a retained deep-JSON stats: counted as malformed, the snapshot printed, alerts decide the exit."""
    pub = publisher(broker.port, "kiosk-a")
    hostile = Subscriber(broker.port, "unused")
    hostile.publish("edged/kiosk-b/stats", deep_json(), retain=True)
    hostile.publish("edged/kiosk-b/status", "online", retain=True)
    hostile.close()
    try:
        result = _watch_once(broker.port)
    finally:
        pub.close()
    snapshot = json.loads(result.stdout)
    assert snapshot["devices"]["kiosk-b"]["malformed"] == 1
    assert "RecursionError" in snapshot["devices"]["kiosk-b"]["last_malformed"]
    assert result.returncode == 0, result.stderr  # nothing to alert about: kiosk-b is online, kiosk-a too


def test_watch_once_on_an_empty_broker_is_not_all_fine(broker):
    result = _watch_once(broker.port)
    snapshot = json.loads(result.stdout)
    assert result.returncode == 1
    assert [a["kind"] for a in snapshot["alerts"]] == ["no_devices"] and snapshot["devices"] == {}
    assert "EDGED_MQTT__TOPIC_PREFIX" in snapshot["alerts"][0]["detail"]


def test_alerts_for_a_lost_camera_and_for_no_frames_but_not_while_starting(broker):
    kiosks = {
        "kiosk-blind": {**STATS, "camera_ok": False, "camera_reconnects": 4},
        "kiosk-idle": {**STATS, "fps": 0.0},  # processed frames, and now none
        # The first stats go out as the daemon starts, before the camera delivers: not an alert...
        "kiosk-starting": {**STATS, "fps": 0.0, "frames": 0, "uptime_s": 3.2},
        # ...unless the camera never delivers.
        "kiosk-never": {**STATS, "fps": 0.0, "frames": 0, "uptime_s": STARTUP_GRACE_S + 1},
    }
    pubs = [publisher(broker.port, name) for name in kiosks]
    for pub, stats in zip(pubs, kiosks.values(), strict=True):
        pub.stats(stats)
    try:
        result = _watch_once(broker.port)
    finally:
        for pub in pubs:
            pub.close()
    alerts = {(a["device"], a["kind"]) for a in json.loads(result.stdout)["alerts"]}
    assert result.returncode == 1
    assert alerts == {("kiosk-blind", "camera"), ("kiosk-idle", "no_frames"), ("kiosk-never", "no_frames")}


def test_events_sent_while_the_watcher_was_away_are_not_counted_lost(broker):
    # A broker restart: the kiosk is back first (reconnect after 1 s) and sends events before the watcher (after
    # 4 s) has subscribed again. The watcher never gets them, and that says nothing about the kiosk: they are
    # skipped, not lost, and no `lost` alert is raised (the dashboard used to report "3 events lost").
    view = FleetView("edged")
    feed = Feed(MqttSettings(host="127.0.0.1", port=broker.port, reconnect_min_s=4, reconnect_max_s=4), None, view)
    with feed.running():
        wait_until(lambda: feed.connected and feed.subscribed.is_set(), what="the watcher to subscribe")
        pub = publisher(broker.port, "kiosk-r")
        pub.event(TrackEvent("face_appeared", track(), 1_700_000_001.0))
        wait_until(lambda: "kiosk-r" in view.devices and view.devices["kiosk-r"].seq["events"].last == 1,
                   what="the first event")
        broker.stop()
        wait_until(lambda: not feed.connected, what="the watcher to notice")
        broker.start()
        assert pub.wait_connected(5)
        other = Subscriber(broker.port, "edged/kiosk-r/events")
        for second in (2, 3, 4):
            pub.event(TrackEvent("emotion_changed", track(emotion="sad"), 1_700_000_000.0 + second,
                                 previous_emotion="happy"))
        other.wait_count("edged/kiosk-r/events", 3)
        other.close()
        assert not feed.connected, "the watcher came back before the kiosk's events: the test proves nothing"
        wait_until(lambda: feed.connected, timeout=10, what="the watcher to reconnect")
        pub.event(TrackEvent("face_left", track(emotion="sad"), 1_700_000_006.0))
        wait_until(lambda: view.devices["kiosk-r"].seq["events"].last == 5, what="the event after the outage")
        pub.close()
    events = view.devices["kiosk-r"].seq["events"]
    assert (events.lost, events.skipped) == (0, 3)
    assert "lost" not in [a.kind for a in view.alerts(1_700_000_007.0)]
