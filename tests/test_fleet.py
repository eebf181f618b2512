"""The fleet model: seq health (gap, duplicate, late, reset), emotion mix and alerts, fed by real MQTT traffic
from edged's own publishers and from a raw client injecting a gap, a redelivery and a reset."""

from __future__ import annotations

import json
import threading
import time

import pytest
from mosquitto import Subscriber, wait_until
from test_publisher import STATS, track

from edged import __version__
from edged.faces import TrackEvent
from edged.fleet import FleetView, SeqStream, duration
from edged.publisher import MqttPublisher
from edged.settings import MqttSettings
from edged.watch import watch

EVENT = ('{"v":1,"device":"%s","ts":"%s","seq":%d,"type":"face_appeared","track":1,'
         '"emotion":"%s","confidence":0.9,"scores":{"happy":0.9},"box":[0,0,10,10]}')


def ts(second: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(second))


def test_seq_stream_tells_gaps_duplicates_late_arrivals_and_resets():
    stream = SeqStream()
    kinds = [stream.add(seq, ts(at)) for seq, at in
             [(1, 1), (2, 2), (2, 2), (5, 5), (3, 3), (6, 6), (4, 4), (4, 4), (1, 100), (2, 101)]]
    assert kinds == ["ok", "ok", "duplicate", "gap", "late", "ok", "late", "duplicate", "reset", "ok"]
    assert (stream.lost, stream.duplicates, stream.late, stream.resets, stream.last) == (0, 2, 2, 1, 2)
    assert stream.gaps == [(3, 4)]

    after_reset = SeqStream()
    for seq in (7, 8, 12):
        after_reset.add(seq, ts(seq))
    assert after_reset.lost == 3 and after_reset.add(3, ts(50)) == "reset" and after_reset.lost == 3


def test_a_jump_is_not_loss_on_latest_value_topics_nor_once_after_the_watcher_was_away():
    # state and stats store seq in blocks of 1000 (docs/mqtt.md): a restarted kiosk jumps ahead, nothing is missing
    state = SeqStream(latest_value=True)
    assert [state.add(seq, ts(seq)) for seq in (1, 2, 1001, 1002)] == ["ok", "ok", "skip", "ok"]
    assert (state.lost, state.skipped, state.last) == (0, 998, 1002)
    assert state.add(5, ts(2000)) == "reset"  # it never goes back: smaller is still a reset

    events = SeqStream()
    events.add(1, ts(1))
    events.resync()  # the watcher's connection came back: what was published meanwhile never reached it
    assert events.add(2, ts(2)) == "ok"  # nothing missed: the resync is spent on the next message, jump or not
    events.resync()
    assert [events.add(seq, ts(seq)) for seq in (2, 9, 12)] == ["duplicate", "skip", "gap"]
    assert (events.lost, events.skipped, events.gaps) == (2, 6, [(10, 11)])  # after the first jump, gaps are loss


def test_an_offline_kiosks_last_figures_are_not_the_present():
    view = FleetView("edged")
    stats = json.dumps({"v": 1, "device": "k", "ts": ts(1_700_000_000), "seq": 1, "version": __version__,
                        "model_id": "m", "cpu_temp_c": None, **STATS, "outbox_depth": 4})
    face = '{"track":1,"emotion":"sad","confidence":0.8,"scores":{"sad":0.8},"box":[0,0,9,9]}'
    for device in ("k", "j"):
        view.apply(f"edged/{device}/status", b"online", now=1_700_000_000)
        view.apply(f"edged/{device}/stats", stats.replace('"k"', f'"{device}"').encode(), now=1_700_000_000)
        view.apply(f"edged/{device}/state", (f'{{"v":1,"device":"{device}","ts":"{ts(1_700_000_000)}","seq":1,'
                                             f'"faces":[{face}]}}').encode(), now=1_700_000_000)
    assert view.snapshot(1_700_000_001)["fleet"]["faces"] == 2
    view.apply("edged/k/status", b"offline", now=1_700_000_002)  # its Last Will: the retained state stays behind
    snapshot = view.snapshot(1_700_000_003)
    offline, online = snapshot["devices"]["k"], snapshot["devices"]["j"]
    assert (offline["fps"], offline["faces"], offline["emotions_now"], offline["camera_ok"]) == (None, None, [], None)
    assert (online["fps"], online["faces"], online["emotions_now"]) == (STATS["fps"], 1, ["sad"])
    assert snapshot["fleet"]["faces"] == view.fleet_summary(1_700_000_003, mix=False)["faces"] == 1
    assert offline["outbox_depth"] == 4  # what it still has to send is its last word on that


def test_alerts_say_counts_and_ages_as_people_read_them():
    assert [duration(s) for s in (-1, 0, 89.4, 90, 109, 5399, 5400, 7200)] == \
        ["0 s", "0 s", "89 s", "2 min", "2 min", "90 min", "1.5 h", "2.0 h"]
    view = FleetView("edged")
    for seq in (1, 3):
        view.apply("edged/k/events", (EVENT % ("k", ts(1_700_000_000 + seq), seq, "sad")).encode(),
                   now=1_700_000_000 + seq)
    view.apply("edged/k/status", b"offline", now=1_700_000_004)
    details = {a.kind: a.detail for a in view.alerts(1_700_000_003 + 109)}
    assert details == {"offline": "offline last seen 2 min ago", "lost": "1 event lost (seq 2)"}


def test_a_kiosk_whose_retained_status_is_cleared_is_retired():
    # docs/fleet.md: retire a kiosk by clearing its retained status, state and stats (empty retained messages)
    view = FleetView("edged")
    view.apply("edged/k/status", b"online", now=1_700_000_000)
    view.apply("edged/k/events", (EVENT % ("k", ts(1_700_000_000), 1, "sad")).encode(), now=1_700_000_000)
    for topic in ("status", "state", "stats"):
        view.apply(f"edged/k/{topic}", b"", now=1_700_000_001)
    assert view.devices == {} and view.rejected == 0
    view.remember("old", 1_699_999_000.0, "unknown")  # heard from once, never said online: nothing current
    old = view.snapshot(1_700_000_002)["devices"]["old"]
    assert (old["fps"], old["faces"], old["camera_ok"]) == (None, None, None)
    assert "it never said online or offline" in view.alerts(1_700_000_002)[0].detail


def test_emotion_mix_counts_events_within_the_window():
    view = FleetView("edged", window_s=60)
    for i, (device, emotion, at) in enumerate([("a", "happy", 0), ("a", "sad", 50), ("a", "happy", 100),
                                                ("b", "neutral", 100)]):
        view.apply(f"edged/{device}/events", (EVENT % (device, ts(1_700_000_000 + at), i + 1, emotion)).encode(),
                   now=1_700_000_000 + at)
    now = 1_700_000_100 + 5
    assert view.emotion_mix(view.devices["a"], now) == {"happy": 0.5, "sad": 0.5}  # the first happy is too old
    assert view.emotion_mix(None, now) == {"happy": 0.333, "neutral": 0.333, "sad": 0.333}


def test_payloads_from_a_newer_kiosk_with_unknown_fields_are_accepted_and_broken_ones_rejected():
    # Version 1 grows by adding fields (docs/mqtt.md): a fleet view of this release must read a newer kiosk's
    # messages, at any depth (a new envelope field, a new face field, a new latency stage).
    view = FleetView("edged")
    newer_event = (EVENT % ("n", ts(1_700_000_000), 1, "happy"))[:-1] + ',"gaze":"left"}'
    view.apply("edged/n/events", newer_event.encode(), now=1_700_000_000)
    face = '{"track":1,"emotion":"sad","confidence":0.8,"scores":{"sad":0.8},"box":[0,0,9,9],"age_band":"adult"}'
    state = f'{{"v":1,"device":"n","ts":"{ts(1_700_000_001)}","seq":1,"faces":[{face}],"lighting":"dim"}}'
    view.apply("edged/n/state", state.encode(), now=1_700_000_001)
    stats = {**STATS, "latency_ms": {**STATS["latency_ms"], "encode": {"p50": 1.0, "p95": 2.0}}, "npu_temp_c": 40}
    view.apply("edged/n/stats", json.dumps({"v": 1, "device": "n", "ts": ts(1_700_000_002), "seq": 1,
                                            "version": "9.9", "model_id": "m", "cpu_temp_c": None,
                                            **stats}).encode(), now=1_700_000_002)
    device = view.devices["n"]
    assert view.rejected == 0 and device.seq["events"].last == 1
    assert [f.emotion for f in device.faces] == ["sad"] and device.fps == STATS["fps"]
    for broken in (b"not json", b'{"v":2,"device":"n"}', newer_event.replace('"seq":1', '"seq":0').encode()):
        view.apply("edged/n/events", broken, now=1_700_000_003)
    assert view.rejected == 3


@pytest.fixture
def fleet(broker):
    """A FleetView fed by `watch --json` machinery in a thread (output discarded) from the real broker."""
    import io

    from rich.console import Console

    view, stop = FleetView("edged", stale_s=3600), threading.Event()
    thread = threading.Thread(target=watch, args=(MqttSettings(host="127.0.0.1", port=broker.port), None, view, stop),
                              kwargs={"console": Console(file=io.StringIO()), "refresh_s": 0.2, "as_json": True},
                              daemon=True)
    thread.start()
    probe = Subscriber(broker.port, "unused")
    probe.publish("edged/probe/status", "online", retain=True)
    wait_until(lambda: "probe" in view.devices, what="the fleet view to subscribe")
    probe.publish("edged/probe/status", b"", retain=True)
    probe.close()
    wait_until(lambda: "probe" not in view.devices, what="the cleared probe to retire its device")
    yield view
    stop.set()
    thread.join(5)


def test_fleet_of_publishers_with_an_injected_gap_duplicate_and_reset(broker, fleet):
    settings = MqttSettings(host="127.0.0.1", port=broker.port, state_interval_s=0)
    pubs = [MqttPublisher(settings, f"kiosk-{i}", None, "emotions-test", __version__) for i in range(5)]
    raw = Subscriber(broker.port, "unused")
    try:
        for pub in pubs:
            pub.start()
        for pub in pubs:
            assert pub.wait_connected(5)
        now = time.time()
        for i, pub in enumerate(pubs):  # 5 healthy kiosks, i faces each, a complete events stream
            tracks = [track(id_=n, emotion="happy" if n % 2 else "neutral", x=10 + 80 * n) for n in range(i)]
            for t in tracks:
                pub.event(TrackEvent("face_appeared", t, now))
            pub.state(tracks, now)
            pub.stats({**STATS, "fps": 10.0 + i})
        # kiosk-x: 1, 2, 2 again (a redelivery), 5 (3 and 4 lost), then 1 with a new ts (its counter was reset)
        sent = [(1, 0), (2, 1), (2, 1), (5, 4), (1, 10)]
        for seq, at in sent:
            raw.publish("edged/kiosk-x/events", EVENT % ("kiosk-x", ts(int(now) + at), seq, "sad"))
        raw.publish("edged/kiosk-x/status", "online", retain=True)
        pubs[4].close()  # kiosk-4 goes offline

        wait_until(lambda: len(fleet.devices) == 6 and fleet.devices["kiosk-4"].status == "offline"
                   and fleet.devices["kiosk-x"].seq["events"].resets == 1
                   and all(fleet.devices[f"kiosk-{i}"].fps == 10.0 + i for i in range(5)), what="the whole fleet")
        snapshot = fleet.snapshot(time.time())
    finally:
        for pub in pubs:
            pub.close(timeout=1.0)
        raw.close()

    # kiosk-4 is offline: its 4 faces are its last state, not faces in view now
    assert [snapshot["devices"][f"kiosk-{i}"]["faces"] for i in range(5)] == [0, 1, 2, 3, None]
    assert snapshot["fleet"]["faces"] == 6 and snapshot["fleet"]["online"] == 5  # 4 kiosks and kiosk-x
    assert [snapshot["devices"][f"kiosk-{i}"]["seq"]["events"]["last"] for i in range(5)] == [None, 1, 2, 3, 4]
    assert all(snapshot["devices"][f"kiosk-{i}"]["seq"]["events"]["lost"] == 0 for i in range(5))
    x = snapshot["devices"]["kiosk-x"]["seq"]["events"]
    assert (x["lost"], x["duplicates"], x["resets"], x["last"]) == (2, 1, 1, 1)
    # face_appeared events: 6 neutral and 4 happy from the kiosks, 4 sad from kiosk-x (its duplicate not counted)
    assert snapshot["fleet"]["emotion_mix"] == {"neutral": 0.429, "happy": 0.286, "sad": 0.286}
    alerts = {(a["device"], a["kind"]) for a in snapshot["alerts"]}
    assert alerts == {("kiosk-4", "offline"), ("kiosk-x", "lost"), ("kiosk-x", "reset")}
    assert "2 events lost (seq 3-4)" in {a["detail"] for a in snapshot["alerts"]}
