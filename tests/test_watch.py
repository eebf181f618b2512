"""`edged watch` on real MQTT traffic: devices, faces, events, gaps and offline devices."""

from __future__ import annotations

import io
import threading

import pytest
from mosquitto import Subscriber, wait_until
from rich.console import Console
from test_publisher import STATS, track

from edged import __version__
from edged.faces import TrackEvent
from edged.publisher import MqttPublisher
from edged.settings import MqttSettings
from edged.watch import FleetView, render, watch


@pytest.fixture
def watching(broker):
    """`watch()` running in a thread against the broker; yields its FleetView and a function that stops it."""
    view, stop, out = FleetView("edged"), threading.Event(), io.StringIO()
    console = Console(file=out, width=120, force_terminal=False)
    thread = threading.Thread(
        target=watch, args=(MqttSettings(host="127.0.0.1", port=broker.port), None, "edged", stop),
        kwargs={"view": view, "console": console, "refresh_s": 0.05}, daemon=True,
    )
    thread.start()
    # watch() subscribes asynchronously; a retained marker tells us when it is listening
    marker = Subscriber(broker.port, "unused")
    marker.publish("edged/marker/status", "online", retain=True)
    wait_until(lambda: "marker" in view.devices, what="watch to subscribe")
    marker.publish("edged/marker/status", b"", retain=True)  # clear it again
    marker.close()

    def finish() -> str:
        """Stop watch() and return what it drew (a console that is not a terminal gets the last frame)."""
        stop.set()
        thread.join(5)
        assert not thread.is_alive(), "watch() did not return after stop was set"
        return out.getvalue()

    yield view, finish
    finish()


def test_watch_shows_devices_faces_and_events(broker, watching):
    view, finish = watching
    settings = MqttSettings(host="127.0.0.1", port=broker.port, state_interval_s=0)
    pub = MqttPublisher(settings, "kiosk-1", None, model_id="emotions-test", version=__version__)
    pub.start()
    assert pub.wait_connected(5)
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
    assert device.missed == 0 and view.rejected == 0

    pub.close()
    wait_until(lambda: view.devices["kiosk-1"].status == "offline", what="offline")
    drawn = finish()
    assert "kiosk-1" in drawn and "offline" in drawn and "happy -> sad" in drawn


def test_watch_counts_seq_gaps_and_rejects_garbage(broker, watching):
    view, _ = watching
    raw = Subscriber(broker.port, "unused")
    base = ('{"v":1,"device":"cam","ts":"2024-01-01T00:00:0%dZ","seq":%d,"type":"face_appeared","track":1,'
            '"emotion":"happy","confidence":0.9,"scores":{"happy":0.9},"box":[0,0,10,10]}')
    for seq in (1, 2, 5):  # 3 and 4 never arrive
        raw.publish("edged/cam/events", base % (seq, seq))
    raw.publish("edged/cam/events", "not json")
    raw.publish("edged/cam/status", "sleeping")
    raw.close()
    wait_until(lambda: view.rejected == 2, what="two rejected messages")
    assert len(view.events) == 3
    assert view.devices["cam"].missed == 2
    assert view.devices["cam"].last_seen_utc == 1704067205.0


def test_render_without_devices():
    console = Console(file=io.StringIO(), width=100)
    console.print(render(FleetView("edged"), "127.0.0.1:1883 edged/+/#"))
    assert "devices" in console.file.getvalue()
