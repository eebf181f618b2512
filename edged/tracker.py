"""Tracking: a stable id per face across frames (greedy IoU), scores smoothed over time, events on change.

Smoothing is an exponential moving average (`smoothing` = weight of the newest frame's scores) and the
reported emotion only changes when another label has led the smoothed scores for `min_change_s` seconds and
beats it by `change_margin`, so neither one noisy frame nor a face hovering between two emotions floods the
events topic (a published emotion changes at most about once per `min_change_s`). A face is announced after `min_hits`
matched frames and leaves after `max_missing_s` seconds unseen.
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import TYPE_CHECKING

from edged.faces import Box, Detection, Track, TrackEvent

if TYPE_CHECKING:
    from edged.settings import TrackerSettings


def iou(a: Box, b: Box) -> float:
    """Intersection over union of two (x, y, w, h) boxes, 0..1."""
    ix = max(0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


def snapshot(track: Track) -> Track:
    """A copy that later updates of the live track cannot change (events are published asynchronously)."""
    return dataclasses.replace(track, scores=dict(track.scores))


class Tracker:
    """Turns per-frame detections into tracks and `TrackEvent`s; timestamps are UTC epoch seconds."""

    def __init__(self, settings: TrackerSettings, first_id: int = 1) -> None:
        self.iou_threshold = float(settings.iou_threshold)
        self.max_missing_s = float(settings.max_missing_s)
        self.smoothing = float(settings.smoothing)
        self.min_hits = max(1, int(settings.min_hits))
        self.change_margin = float(settings.change_margin)
        self.min_change_s = float(settings.min_change_s)
        self._live: list[Track] = []
        self._confirmed: set[int] = set()
        self._ids = itertools.count(first_id)

    @property
    def tracks(self) -> list[Track]:
        """Snapshots of the confirmed tracks, including ones unseen for less than `max_missing_s`."""
        return [snapshot(t) for t in self._live if t.id in self._confirmed]

    def update(self, detections: list[Detection], ts_utc: float) -> list[TrackEvent]:
        """Match this frame's detections to tracks; returns the events it caused."""
        events: list[TrackEvent] = []
        matched_tracks: set[int] = set()
        matched_dets: set[int] = set()
        pairs = sorted(((iou(t.box, d.box), ti, di) for ti, t in enumerate(self._live)
                        for di, d in enumerate(detections)), reverse=True)
        for overlap, ti, di in pairs:
            if overlap < self.iou_threshold:
                break
            if ti in matched_tracks or di in matched_dets:
                continue
            matched_tracks.add(ti)
            matched_dets.add(di)
            self._hit(self._live[ti], detections[di], ts_utc, events)

        kept: list[Track] = []
        for ti, track in enumerate(self._live):
            if ti not in matched_tracks:
                track.misses += 1
                if ts_utc - track.last_seen_utc > self.max_missing_s:
                    if track.id in self._confirmed:
                        self._confirmed.discard(track.id)
                        events.append(_left(track, ts_utc))
                    continue
            kept.append(track)
        self._live = kept

        for di, det in enumerate(detections):
            if di not in matched_dets:
                self._start(det, ts_utc, events)
        return events

    def flush(self, ts_utc: float) -> list[TrackEvent]:
        """End of stream: `face_left` for every confirmed track, and forget them all."""
        events = [_left(t, ts_utc) for t in self._live if t.id in self._confirmed]
        self._live, self._confirmed = [], set()
        return events

    def _start(self, det: Detection, ts_utc: float, events: list[TrackEvent]) -> None:
        scores = dict(det.scores)
        track = Track(id=next(self._ids), box=det.box, scores=scores, emotion=max(scores, key=scores.__getitem__),
                      first_seen_utc=ts_utc, last_seen_utc=ts_utc)
        self._live.append(track)
        if self.min_hits <= 1:
            self._confirmed.add(track.id)
            events.append(TrackEvent("face_appeared", snapshot(track), ts_utc))

    def _hit(self, track: Track, det: Detection, ts_utc: float, events: list[TrackEvent]) -> None:
        a = self.smoothing
        track.scores = {k: (1.0 - a) * v + a * det.scores.get(k, 0.0) for k, v in track.scores.items()}
        track.box = det.box
        track.last_seen_utc = ts_utc
        track.hits += 1
        track.misses = 0
        previous = track.emotion
        best = max(track.scores, key=track.scores.__getitem__)
        if best == previous:
            track.leader = None
        elif best != track.leader:
            track.leader, track.leader_since_utc = best, ts_utc
        if (track.leader is not None and ts_utc - track.leader_since_utc >= self.min_change_s
                and track.scores[best] >= track.scores[previous] + self.change_margin):
            track.emotion, track.leader = best, None
        if track.id not in self._confirmed:
            if track.hits >= self.min_hits:
                self._confirmed.add(track.id)
                events.append(TrackEvent("face_appeared", snapshot(track), ts_utc))
        elif track.emotion != previous:
            events.append(TrackEvent("emotion_changed", snapshot(track), ts_utc, previous_emotion=previous))


def _left(track: Track, ts_utc: float) -> TrackEvent:
    return TrackEvent("face_left", snapshot(track), ts_utc, extra={"dwell_s": round(track.dwell_s, 3)})
