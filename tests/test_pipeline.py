"""The whole pipeline on the sample clip, publishing into a recording publisher."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from media import SAMPLE_CLIP, require_model

from edged.faces import Track, TrackEvent
from edged.pipeline import STAGES, build
from edged.settings import load_settings


class RecordingPublisher:
    """Keeps everything the pipeline publishes, in order; can stop the pipeline after some frames."""

    def __init__(self, stop_after_states: int | None = None, stop: threading.Event | None = None) -> None:
        self.started = self.closed = False
        self.events: list[TrackEvent] = []
        self.states: list[list[Track]] = []
        self.stats_seen: list[dict[str, Any]] = []
        self._stop_after, self._stop = stop_after_states, stop

    @property
    def connected(self) -> bool:
        return self.started and not self.closed

    @property
    def backlog(self) -> int:
        return 0

    def start(self) -> None:
        self.started = True

    def event(self, event: TrackEvent) -> None:
        self.events.append(event)

    def state(self, tracks: list[Track], ts_utc: float) -> None:
        self.states.append(tracks)
        if self._stop is not None and len(self.states) == self._stop_after:
            self._stop.set()

    def stats(self, stats: dict[str, Any]) -> None:
        self.stats_seen.append(stats)

    def close(self, timeout: float = 5.0) -> None:
        self.closed = True


def _settings(model, **extra: str):
    return load_settings({"EDGED_CAMERA__SOURCE": str(SAMPLE_CLIP), "EDGED_CAMERA__REALTIME": "false",
                          "EDGED_MODEL__PATH": str(model), **extra})


def test_sample_clip_end_to_end():
    model = require_model()
    publisher = RecordingPublisher()
    stop = threading.Event()
    final = build(_settings(model), lambda model_id: publisher, stop).run()

    assert publisher.started and publisher.closed and not stop.is_set()
    assert final["frames"] == 180 and final["frames_dropped"] == 0  # a file as fast as possible: every frame
    assert set(final["latency_ms"]) == set(STAGES) and final["latency_ms"]["detect"]["p50"] > 0
    assert publisher.stats_seen[-1] == final

    appeared = [e for e in publisher.events if e.type == "face_appeared"]
    left = [e for e in publisher.events if e.type == "face_left"]
    assert len(appeared) == 2 == final["faces_seen"]  # the astronaut, then Grace Hopper
    assert [e.track.id for e in left] == [e.track.id for e in appeared]
    astronaut = left[0].track
    assert astronaut.emotion == "happy"
    assert 3.0 < astronaut.dwell_s <= 4.0  # on screen for the first 4 s of the clip
    assert publisher.states[-1] == []  # nobody in view at the end


def test_stop_event_ends_the_run_saying_goodbye_to_faces_in_view():
    # SIGTERM sets `stop`: the astronaut is on screen at frame 30, so a face_left for it goes out before close.
    model = require_model()
    stop = threading.Event()
    publisher = RecordingPublisher(stop_after_states=30, stop=stop)
    final = build(_settings(model), lambda model_id: publisher, stop).run()
    assert publisher.closed and 30 <= final["frames"] < 180
    appeared = [e.track.id for e in publisher.events if e.type == "face_appeared"]
    left = [e.track.id for e in publisher.events if e.type == "face_left"]
    assert appeared and left == appeared
    assert publisher.states[-1] == [] and final["camera_ok"] and final["camera_reconnects"] == 0


def test_a_failure_mid_run_still_says_goodbye_to_faces_in_view():
    # The classifier fails at frame 40 (the astronaut is on screen): the error reaches the caller, and on the way
    # out her face_left, an empty state and the final stats are still published, then the publisher is closed.
    model = require_model()
    publisher = RecordingPublisher()
    pipeline = build(_settings(model), lambda model_id: publisher, threading.Event())
    real_classify, calls = pipeline.classifier.classify, []

    def failing(gray, boxes):
        calls.append(1)
        if len(calls) == 40:
            raise RuntimeError("interpreter failed")
        return real_classify(gray, boxes)

    pipeline.classifier.classify = failing
    with pytest.raises(RuntimeError, match="interpreter failed"):
        pipeline.run()
    appeared = [e.track.id for e in publisher.events if e.type == "face_appeared"]
    left = [e.track.id for e in publisher.events if e.type == "face_left"]
    assert appeared and left == appeared
    assert publisher.states[-1] == [] and publisher.stats_seen[-1] == pipeline.final and publisher.closed
