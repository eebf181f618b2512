"""The capture thread: reads a `FrameSource` into a `FrameQueue`, reopening a lost live source with backoff."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TypeVar

from edged.camera import HUNG_AFTER_S, FrameSource
from edged.camera.queue import FrameQueue
from edged.errors import CameraError, EdgedError
from edged.faces import Frame
from edged.stats import Rolling

logger = logging.getLogger(__name__)

T = TypeVar("T")


class Capture:
    """Runs `source.read()` in its own thread until the stop event, the end of a file or a fatal error.

    lossless: wait for room in the queue instead of dropping the oldest frame (a file processed as fast
    as possible). paced: hand frames over at the pace of their timestamps (a file played in real time).
    The queue is closed when the thread ends, which tells the consumer the stream is over.
    Decode times (read + grayscale, ms) go to `decode_ms`. A source that failed to open (`opened=` its error) or
    is lost later (a read raised) is reopened with backoff; `camera_ok` is False meanwhile, `reconnects` counts
    recoveries. Absent (cannot be opened) and wedged (opens, then delivers nothing) are one case: reopened, and
    `hung` stays False. `hung` is True only while one call into the source has been running for `hung_after_s`
    (a driver that never returns): the pipeline then stops feeding systemd's watchdog (see edged.camera).
    """

    def __init__(self, source: FrameSource, queue: FrameQueue, stop: threading.Event, *, lossless: bool = False,
                 paced: bool = False, backoff_min_s: float = 1.0, backoff_max_s: float = 30.0,
                 opened: CameraError | None = None, hung_after_s: float = HUNG_AFTER_S) -> None:
        self.source = source
        self.queue = queue
        self.stop = stop
        self.lossless = lossless
        self.paced = paced
        self.backoff_min_s = backoff_min_s
        self.backoff_max_s = backoff_max_s
        self.decode_ms = Rolling()
        self.error: EdgedError | None = None
        self.reconnects = 0
        self.failed_reopens = 0  # attempts to reopen that failed, since start
        self._lost: CameraError | None = opened  # why the source is not open yet, if it is not
        self._pending: Frame | None = None  # the frame a reopen read to prove the camera is back
        self.camera_ok = opened is None
        self.hung_after_s = hung_after_s
        self._busy_since: float | None = None  # monotonic start of the source call running now, if any
        self._thread = threading.Thread(target=self._run, name="edged-capture", daemon=True)

    def start(self) -> None:
        self._thread.start()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    @property
    def hung(self) -> bool:
        """One call into the source (open, read, close) has been running for `hung_after_s` or longer."""
        since = self._busy_since
        return since is not None and time.monotonic() - since >= self.hung_after_s

    def _call(self, fn: Callable[[], T]) -> T:  # the source's open, read or close, timed for `hung`
        self._busy_since = time.monotonic()
        try:
            return fn()
        finally:
            self._busy_since = None

    def join(self, timeout: float | None = None) -> None:
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _run(self) -> None:
        first: tuple[float, float] | None = None  # (monotonic, frame UTC) of the first frame, for pacing
        try:
            if self._lost is not None and not self._reopen(self._lost, "unavailable at start"):
                return
            while not self.stop.is_set():
                started = time.perf_counter()
                try:
                    frame, self._pending = (self._pending or self._call(self.source.read)), None
                except CameraError as exc:
                    if not self._reopen(exc):
                        return
                    continue
                if frame is None:
                    return  # end of file
                self.decode_ms.add((time.perf_counter() - started) * 1000.0)
                if self.paced:
                    first = first or (time.monotonic(), frame.captured_utc)
                    if self.stop.wait(first[0] + frame.captured_utc - first[1] - time.monotonic()):
                        return
                if self.lossless:
                    self.queue.put_wait(frame, self.stop)
                else:
                    self.queue.put(frame)
        except EdgedError as exc:  # e.g. a file whose frames edged cannot use: the pipeline reports it
            self.error = exc
        except Exception as exc:  # anything else would die silently in this thread; hand it to the pipeline
            logger.exception("capture thread failed")
            self.error = CameraError(f"capture failed: {exc}")
        finally:
            self.queue.close()

    def _reopen(self, lost: CameraError, what: str = "lost") -> bool:
        """Close and reopen the source, doubling the wait (seconds) up to `backoff_max_s`; False if stopped first.

        Logs the loss once and the recovery once, however many attempts it takes.
        """
        logger.warning("camera %s: %s; reopening with backoff (at most every %.0f s)", what, lost, self.backoff_max_s)
        self.camera_ok = False
        since = time.monotonic()
        delay = min(self.backoff_min_s, self.backoff_max_s)
        attempts = 0
        while True:
            try:
                self._call(self.source.close)
            except Exception as exc:
                logger.debug("closing the lost camera failed: %s", exc)
            if self.stop.wait(delay):
                return False
            attempts += 1
            try:
                self._call(self.source.open)
                # Back only once it delivers: a stream that accepts the connection and then fails every read
                # would otherwise be "lost" and "back" every second, in the log and in the stats.
                self._pending = self._call(self.source.read)
            except CameraError as exc:
                self.failed_reopens += 1
                delay = min(delay * 2, self.backoff_max_s)
                logger.debug("camera still unavailable (next try in %.1f s): %s", delay, exc)
                continue
            self.reconnects += 1
            self.camera_ok = True
            logger.info("camera back after %.1f s (%d attempts)", time.monotonic() - since, attempts)
            return True
