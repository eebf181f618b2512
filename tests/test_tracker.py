"""The tracker: stable ids, smoothing with hysteresis, appear/leave timing, snapshots."""

from __future__ import annotations

from edged.faces import Detection
from edged.settings import TrackerSettings
from edged.tracker import Tracker

LABELS = ("angry", "happy", "neutral")


def scores(happy: float, neutral: float = 0.0) -> dict[str, float]:
    return {"angry": max(0.0, 1.0 - happy - neutral), "happy": happy, "neutral": neutral}


def det(x: int, happy: float = 0.9, neutral: float = 0.05) -> Detection:
    return Detection((x, 100, 80, 80), scores(happy, neutral))


def types(events):
    return [e.type for e in events]


def test_face_appears_after_min_hits_with_a_stable_id():
    tracker = Tracker(TrackerSettings(min_hits=2))
    assert tracker.update([det(100)], 0.0) == []
    appeared = tracker.update([det(104)], 0.1)
    assert types(appeared) == ["face_appeared"] and appeared[0].track.emotion == "happy"
    for i in range(2, 10):
        assert tracker.update([det(100 + 4 * i)], i / 10) == []
    assert [t.id for t in tracker.tracks] == [appeared[0].track.id]


def test_two_faces_keep_their_ids_when_listed_in_another_order():
    tracker = Tracker(TrackerSettings(min_hits=1))
    first = tracker.update([det(0), det(300)], 0.0)
    ids = {e.track.box[0]: e.track.id for e in first}
    tracker.update([det(305), det(5)], 0.1)
    assert {t.box[0]: t.id for t in tracker.tracks} == {5: ids[0], 305: ids[300]}


def test_one_noisy_frame_does_not_flip_the_emotion():
    tracker = Tracker(TrackerSettings(min_hits=1, smoothing=0.3, change_margin=0.1))
    tracker.update([det(100, happy=0.9)], 0.0)
    events = tracker.update([det(100, happy=0.05, neutral=0.9)], 0.1)  # one frame says neutral
    events += tracker.update([det(100, happy=0.9)], 0.2)
    assert events == [] and tracker.tracks[0].emotion == "happy"


def test_a_lasting_change_is_reported_once():
    tracker = Tracker(TrackerSettings(min_hits=1, smoothing=0.3, change_margin=0.1))
    tracker.update([det(100, happy=0.9)], 0.0)
    events = []
    for i in range(1, 15):
        events += tracker.update([det(100, happy=0.05, neutral=0.9)], i / 10)
    assert types(events) == ["emotion_changed"]
    assert events[0].previous_emotion == "happy" and events[0].track.emotion == "neutral"


def test_face_left_after_max_missing_with_dwell():
    tracker = Tracker(TrackerSettings(min_hits=1, max_missing_s=1.0))
    tracker.update([det(100)], 10.0)
    tracker.update([det(100)], 12.0)
    assert tracker.update([], 12.5) == [] and len(tracker.tracks) == 1  # a short gap: still in view
    left = tracker.update([], 13.1)
    assert types(left) == ["face_left"]
    assert left[0].track.dwell_s == 2.0 and left[0].extra["dwell_s"] == 2.0
    assert tracker.tracks == []


def test_an_unconfirmed_blip_leaves_silently():
    tracker = Tracker(TrackerSettings(min_hits=3, max_missing_s=0.5))
    tracker.update([det(100)], 0.0)
    assert tracker.update([], 1.0) == [] and tracker.tracks == []


def test_a_returning_face_is_a_new_track():
    tracker = Tracker(TrackerSettings(min_hits=1, max_missing_s=0.5))
    first = tracker.update([det(100)], 0.0)[0].track.id
    tracker.update([], 1.0)
    again = tracker.update([det(100)], 2.0)[0].track.id
    assert again != first


def test_events_carry_snapshots():
    tracker = Tracker(TrackerSettings(min_hits=1))
    appeared = tracker.update([det(100, happy=0.9)], 0.0)[0]
    for i in range(1, 10):
        tracker.update([det(120, happy=0.05, neutral=0.9)], i / 10)
    assert appeared.track.box == (100, 100, 80, 80) and appeared.track.emotion == "happy"
    assert appeared.track.scores["happy"] == 0.9 and appeared.track.hits == 1


def test_flush_says_goodbye_to_confirmed_tracks_only():
    tracker = Tracker(TrackerSettings(min_hits=2))
    tracker.update([det(0), det(300)], 0.0)
    tracker.update([det(0)], 0.1)  # only the first face is confirmed
    left = tracker.flush(0.2)
    assert types(left) == ["face_left"] and left[0].track.box[0] == 0
    assert tracker.tracks == [] and tracker.flush(0.3) == []
