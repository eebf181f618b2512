"""The faces in view, kept in the state directory so that a crash does not swallow their `face_left`.

A daemon that is SIGKILLed, crashes or loses power never says goodbye to the faces it was following. So the
pipeline records the confirmed tracks in `$EDGED_STATE_DIR/in_view.json` (written to a temporary file, then
renamed: a reader sees the old or the new record, never half of one) whenever the set of faces changes, and at
most every `interval_s` while faces stay in view (so their last-seen time is at most that stale). The next start
reads it back and sends a `face_left` for each, stamped with the time the face was last seen and marked
`recovered`, before any new event. A clean stop empties the record after its own goodbyes.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from pathlib import Path

from edged.faces import Track, TrackEvent

logger = logging.getLogger(__name__)

FILE_NAME = "in_view.json"


class InView:
    """The record in `state_dir`; every failure to read or write it is logged, never raised (it is a safety net)."""

    def __init__(self, state_dir: Path, interval_s: float = 1.0) -> None:
        self.path = Path(state_dir) / FILE_NAME
        self.interval_s = interval_s
        self._ids: tuple[int, ...] | None = None  # None: the first record() writes, whatever the file holds
        self._written_mono = float("-inf")
        self._failed = False
        self._recovered: list[TrackEvent] | None = None

    def recovered(self) -> list[TrackEvent]:
        """`face_left` events for the faces a previous run left in view (none after a clean stop); read once."""
        if self._recovered is None:
            self._recovered = self._read()
        return self._recovered

    def _read(self) -> list[TrackEvent]:
        try:
            raw = json.loads(self.path.read_text())
            tracks = [Track(id=int(t["id"]), box=tuple(int(v) for v in t["box"]),  # type: ignore[arg-type]
                            scores={str(k): float(v) for k, v in t["scores"].items()}, emotion=str(t["emotion"]),
                            first_seen_utc=float(t["first_seen_utc"]), last_seen_utc=float(t["last_seen_utc"]))
                      for t in raw["tracks"]]
        except FileNotFoundError:
            return []
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            logger.warning("faces in view from the last run unreadable (%s): %s; no face_left for them", self.path, exc)
            return []
        if tracks:
            logger.warning("the last run ended without saying goodbye: face_left for %d face(s) it had in view",
                           len(tracks))
        return [TrackEvent("face_left", t, t.last_seen_utc, extra={"recovered": True}) for t in tracks]

    @property
    def max_id(self) -> int:
        """The largest track id of the record (0 when empty), so the next run's ids do not repeat them."""
        return max((e.track.id for e in self.recovered()), default=0)

    def record(self, tracks: list[Track], now_mono: float | None = None) -> None:
        """Write the confirmed `tracks` if they changed, or if they are there and the last write is `interval_s` old."""
        now = time.monotonic() if now_mono is None else now_mono
        ids = tuple(sorted(t.id for t in tracks))
        if ids == self._ids and (not ids or now - self._written_mono < self.interval_s):
            return
        body = {"tracks": [{"id": t.id, "box": list(t.box), "scores": t.scores, "emotion": t.emotion,
                            "first_seen_utc": t.first_seen_utc, "last_seen_utc": t.last_seen_utc} for t in tracks]}
        tmp = self.path.with_suffix(".tmp")
        try:
            with open(tmp, "w") as out:
                json.dump(body, out)
                if ids != self._ids:  # a face came or went: worth surviving a power cut, not just a crash
                    out.flush()
                    os.fsync(out.fileno())
            os.replace(tmp, self.path)
        except OSError as exc:
            if not self._failed:
                logger.warning("cannot record the faces in view in %s: %s", self.path, exc)
                self._failed = True
            with contextlib.suppress(OSError):
                tmp.unlink()
            return
        self._ids, self._written_mono = ids, now
