"""The daemon's wiring: source -> capture thread -> queue -> detector -> classifier -> tracker -> publisher.

One processing loop on the calling thread, one capture thread, and the publisher's threads (paho's network
loop and the outbox drain). Per-frame figures go into rolling stats published every `stats_interval_s`,
never into the log. Under systemd the loop also reports to the service manager (`edged.notify`): READY once
running, WATCHDOG every half `WatchdogSec=` while the loop turns and no call into the camera has hung (one rule for
absent, wedged and stalled cameras: the capture thread reopens them with backoff and the watchdog stays fed; only a
camera call that never returns, or a stuck loop, gets the service restarted; the budget is in `edged.camera`),
a one-line STATUS every `status_interval_s` and at once when the camera is lost or back, STOPPING on the way out.

The published state follows the clock, not frame arrival: when the camera is lost, or no frame has come for
longer than the tracker's `max_missing_s`, every face in view gets its `face_left` (stamped at the last frame's
time) and the state empties at once; fps decays to 0 over its 5 s window; stats say `camera_ok: false`.

Shutdown (SIGTERM, SIGINT, the end of a file, or an error): capture stops, faces still in view get their
`face_left`, the last state and the final stats go out, and the publisher gets `close_timeout_s` to have the
spooled events acknowledged before `offline`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from edged.camera import FrameSource, make_source, source_kind
from edged.camera.capture import Capture
from edged.camera.queue import FrameQueue
from edged.classifier import EmotionClassifier
from edged.detector import FaceDetector, HaarDetector
from edged.errors import CameraError
from edged.faces import Detection, Frame
from edged.inview import InView
from edged.notify import Notifier
from edged.roi import GuidedDetector
from edged.stats import FrameRecorder, Rate, Rolling
from edged.tracker import Tracker

if TYPE_CHECKING:
    from edged.publisher import Publisher
    from edged.settings import Settings

logger = logging.getLogger(__name__)

# How long shutdown waits for the capture thread (systemd/edged.service TimeoutStopSec counts on it).
CAPTURE_JOIN_S = 5.0

STAGES = ("decode", "detect", "classify", "track", "publish")


class Pipeline:
    """Runs until `stop` is set or a file ends; `run()` returns the final stats.

    lossless: a file processed as fast as possible, every frame (the capture waits instead of dropping).
    paced: a file played at its own frame rate, like a camera.
    """

    def __init__(self, source: FrameSource, detector: FaceDetector, classifier: EmotionClassifier, tracker: Tracker,
                 publisher: Publisher, stop: threading.Event, *, queue_size: int = 2, lossless: bool = False,
                 paced: bool = False, backoff_max_s: float = 30.0, stats_interval_s: float = 10.0,
                 notifier: Notifier | None = None, status_interval_s: float = 5.0, close_timeout_s: float = 5.0,
                 source_error: CameraError | None = None, in_view: InView | None = None) -> None:
        self.source, self.detector, self.classifier = source, detector, classifier
        self.tracker, self.publisher, self.stop = tracker, publisher, stop
        self.stats_interval_s = stats_interval_s
        self.notifier = notifier or Notifier()
        self.status_interval_s = status_interval_s
        self.close_timeout_s = close_timeout_s
        self.queue = FrameQueue(queue_size)
        self._capture_stop = threading.Event()  # the caller's `stop` stays theirs; this one ends our thread
        self.capture = Capture(source, self.queue, self._capture_stop, lossless=lossless, paced=paced,
                               backoff_max_s=backoff_max_s, opened=source_error)
        self.latency_ms = {stage: Rolling() for stage in STAGES if stage != "decode"}
        self.latency_ms["decode"] = self.capture.decode_ms
        self.rate = Rate()
        self.frames = 0
        self.final: dict[str, Any] = {}  # the stats at the end of run()
        self.faces_seen = 0
        self._started = time.monotonic()
        self._last_utc = time.time()
        self._last_frame_mono = time.monotonic()  # when the last frame was taken from the queue
        self.in_view = in_view  # the faces in view, kept on disk for the next start after a crash
        self.recorder: FrameRecorder | None = None  # per-frame timings for `edged bench`; None in the daemon

    def run(self) -> dict[str, Any]:
        """Process frames until stopped or the end of a file (then pending events are published)."""
        self._started = self._last_frame_mono = time.monotonic()
        try:
            self.publisher.start()
            if self.in_view is not None:
                for event in self.in_view.recovered():  # a crash left these faces without their goodbye
                    self.publisher.event(event)
                self.in_view.record([])
            self.publisher.stats(self.stats())  # kept by the publisher and sent as soon as it connects
            self.capture.start()
            self.notifier.ready(self.status_line())
            next_stats = self._started + self.stats_interval_s
            next_status = self._started + self.status_interval_s
            watchdog_s = self.notifier.watchdog_interval_s
            next_watchdog = self._started  # the first turn pings at once
            camera_ok = self.capture.camera_ok
            while not self.stop.is_set():
                frame = self.queue.get(timeout=0.2)
                if frame is not None:
                    self._process(frame)
                elif self.queue.finished:
                    break
                now = time.monotonic()
                if frame is None and self.tracker.tracks and (
                        not self.capture.camera_ok or now - self._last_frame_mono > self.tracker.max_missing_s):
                    self._faces_gone()  # the camera is lost or delivers nothing: nobody is seen any more
                if self.capture.camera_ok != camera_ok:  # lost or back: say so now, not at the next interval
                    camera_ok = self.capture.camera_ok
                    next_stats = next_status = now
                # The loop turns, so the daemon lives; only a camera call that never returns starves the watchdog.
                if watchdog_s is not None and now >= next_watchdog and not self.capture.hung:
                    self.notifier.watchdog()
                    next_watchdog = now + watchdog_s
                if now >= next_stats:
                    self.publisher.stats(self.stats())
                    next_stats = now + self.stats_interval_s
                if now >= next_status:
                    self.notifier.status(self.status_line())
                    next_status = now + self.status_interval_s
            if self.capture.error is not None:
                raise self.capture.error
            if not self.stop.is_set():
                logger.info("end of %s after %d frames", getattr(self.source, "source", "stream"), self.frames)
        finally:
            self._shutdown()
        return self.final

    def _faces_gone(self) -> None:
        """No frame for longer than a face may go unseen, or the camera lost: every face in view leaves, stamped at
        the last frame's time (when it was last seen), and the state empties at once, not when the camera is back."""
        for event in self.tracker.flush(self._last_utc):
            self.publisher.event(event)
        self.publisher.state([], self._last_utc)
        if self.in_view is not None:
            self.in_view.record([])

    def _say_goodbye(self) -> None:
        """Stopped, ended or failed: face_left for every face still in view (spooled, so sent now or at the next
        start), the last state (no faces), the final stats."""
        for event in self.tracker.flush(self._last_utc):
            self.publisher.event(event)
        self.publisher.state([], self._last_utc)
        if self.in_view is not None:
            self.in_view.record([])
        self.final = self.stats()
        self.publisher.stats(self.final)

    def _process(self, frame: Frame) -> None:
        t0 = time.perf_counter()
        boxes = self.detector.detect(frame.gray)
        t1 = time.perf_counter()
        scores = self.classifier.classify(frame.gray, boxes)
        t2 = time.perf_counter()
        events = self.tracker.update([Detection(b, s) for b, s in zip(boxes, scores, strict=True)], frame.captured_utc)
        t3 = time.perf_counter()
        for event in events:
            self.publisher.event(event)
            if event.type == "face_appeared":
                self.faces_seen += 1
        tracks = self.tracker.tracks
        self.publisher.state(tracks, frame.captured_utc)  # the publisher throttles
        if self.in_view is not None:
            self.in_view.record(tracks)
        t4 = time.perf_counter()
        self.latency_ms["detect"].add((t1 - t0) * 1000.0)
        if boxes:  # a frame without faces costs nothing to classify; keep it out of the percentiles
            self.latency_ms["classify"].add((t2 - t1) * 1000.0)
        self.latency_ms["track"].add((t3 - t2) * 1000.0)
        self.latency_ms["publish"].add((t4 - t3) * 1000.0)
        self.rate.tick()
        self.frames += 1
        self._last_utc = frame.captured_utc
        self._last_frame_mono = time.monotonic()
        if self.recorder is not None:
            self.recorder.record(frame, len(boxes), (t1 - t0, t2 - t1, t3 - t2, t4 - t3), time.monotonic())

    def stats(self) -> dict[str, Any]:
        """fps (processed, last 5 s), latency_ms per stage {p50, p95}, counters, uptime in seconds.

        faces_seen counts faces that appeared (confirmed tracks), not detections.
        """
        return {
            "fps": self.rate.per_second(),
            "latency_ms": {stage: self.latency_ms[stage].percentiles() for stage in STAGES},
            "frames": self.frames,
            "frames_dropped": self.queue.dropped,
            "faces_seen": self.faces_seen,
            "queue_depth": len(self.queue),
            "uptime_s": round(time.monotonic() - self._started, 1),
            "camera_ok": self.capture.camera_ok,
            "camera_reconnects": self.capture.reconnects,
        }

    def status_line(self) -> str:
        """One line for systemd's STATUS=: fps, faces in view, camera and broker state, events waiting."""
        faces = len(self.tracker.tracks)
        broker = "connected" if self.publisher.connected else "disconnected"
        camera = "ok" if self.capture.camera_ok else "lost, reopening"
        backlog = self.publisher.backlog
        return (f"{self.rate.per_second():.1f} fps, {faces} face{'' if faces == 1 else 's'} in view, "
                f"broker {broker}, camera {camera} ({self.capture.reconnects} reconnects), "
                f"{backlog} events in the outbox, {self.frames} frames")

    def _shutdown(self) -> None:
        self.notifier.stopping(f"stopping after {self.frames} frames")
        self._capture_stop.set()
        self.queue.close()  # wakes a capture thread waiting for room
        self.capture.join(timeout=CAPTURE_JOIN_S)
        if self.capture.alive:
            # releasing a capture that another thread is reading can crash the backend; exit frees it anyway
            logger.warning("capture thread still busy after 5 s; leaving the camera to process exit")
        else:
            try:
                self.source.close()
            except Exception:
                logger.exception("closing the camera failed")
        close = getattr(self.detector, "close", None)  # a guided detector's background scan thread
        if close is not None:
            try:
                close()
            except Exception:
                logger.exception("stopping the detector failed")
        try:
            self._say_goodbye()
        except Exception:
            logger.exception("publishing the last events, state and stats failed")
        try:
            self.publisher.close(timeout=self.close_timeout_s)
        except Exception:
            logger.exception("closing the publisher failed")


def build(settings: Settings, make_publisher: Callable[[str], Publisher], stop: threading.Event,
          notifier: Notifier | None = None, keep_faces: bool = True) -> Pipeline:
    """Load the cascade and model, open the camera, then the publisher (`make_publisher(model_id)`).

    A live camera that cannot be opened does not stop the start: the capture thread keeps trying.
    The detector does a full scan every `full_scan_every` frames and searches around known faces in between.
    keep_faces: record the faces in view in the state directory (`edged.inview`); `edged bench` does not.
    """
    haar = HaarDetector(settings.detector)
    every = settings.detector.full_scan_every
    camera = settings.camera
    is_file = source_kind(camera.source) == "file"
    # Live: the periodic full scan runs beside the loop, so no frame waits for it. A file processed as fast as
    # possible: in line, so what is found does not depend on thread timing.
    beside = None if is_file and not camera.realtime else HaarDetector(settings.detector)
    detector: FaceDetector = haar if every == 1 else GuidedDetector(haar, every, settings.detector.region_margin,
                                                                    background=beside)
    classifier = EmotionClassifier.from_settings(settings.model)
    in_view = InView(settings.state_dir) if keep_faces else None
    tracker = Tracker(settings.tracker, first_id=in_view.max_id + 1 if in_view else 1)  # ids go on after those the last run left
    source = make_source(camera)
    source_error = None
    try:
        source.open()
    except CameraError as exc:
        if is_file:
            raise
        source_error = exc  # the capture thread logs it once and retries
    try:
        publisher = make_publisher(classifier.model_id)
    except BaseException:
        source.close()
        raise
    return Pipeline(source, detector, classifier, tracker, publisher, stop, queue_size=camera.queue_size,
                    lossless=is_file and not camera.realtime, paced=is_file and camera.realtime,
                    backoff_max_s=camera.reopen_backoff_max_s, stats_interval_s=settings.mqtt.stats_interval_s,
                    notifier=notifier, close_timeout_s=settings.outbox.flush_timeout_s, source_error=source_error,
                    in_view=in_view)
