"""The hand-off between the capture thread and the processing loop: a short queue that drops the oldest frame.

Freshness beats completeness: when processing falls behind a live camera, the frame nobody has looked at
yet is replaced by a newer one and counted as dropped. A file processed as fast as possible uses
`put_wait` instead, so no frame is lost.
"""

from __future__ import annotations

import threading
from collections import deque

from edged.faces import Frame


class FrameQueue:
    """A bounded, thread-safe frame queue; `close()` marks the end of the stream for the consumer."""

    def __init__(self, maxsize: int = 2) -> None:
        if maxsize < 1:
            raise ValueError("maxsize must be at least 1")
        self._frames: deque[Frame] = deque()
        self._maxsize = maxsize
        self._cond = threading.Condition()
        self._closed = False
        self.dropped = 0

    def put(self, frame: Frame) -> None:
        """Add a frame; if the queue is full, drop the oldest one and count it."""
        with self._cond:
            if len(self._frames) >= self._maxsize:
                self._frames.popleft()
                self.dropped += 1
            self._frames.append(frame)
            self._cond.notify()

    def put_wait(self, frame: Frame, stop: threading.Event, poll_s: float = 0.1) -> bool:
        """Add a frame, waiting for room (no drop); False if `stop` was set or the queue closed first."""
        with self._cond:
            while len(self._frames) >= self._maxsize:
                if stop.is_set() or self._closed:
                    return False
                self._cond.wait(poll_s)
            self._frames.append(frame)
            self._cond.notify_all()
            return True

    def get(self, timeout: float) -> Frame | None:
        """The oldest frame, or None after `timeout` seconds (or at once when closed and empty)."""
        with self._cond:
            if not self._frames and not self._closed:
                self._cond.wait(timeout)
            if not self._frames:
                return None
            frame = self._frames.popleft()
            self._cond.notify_all()  # a put_wait may be waiting for room
            return frame

    def close(self) -> None:
        """No more frames will come; `get` drains what is left, then returns None at once."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    @property
    def finished(self) -> bool:
        """Closed and drained: the stream has ended."""
        with self._cond:
            return self._closed and not self._frames

    def __len__(self) -> int:
        with self._cond:
            return len(self._frames)
