"""`edged bench VIDEO`: the daemon's real pipeline on a video file, with every figure the performance goals need.

The pipeline is the one `edged run` builds (`pipeline.build`: the same camera backend, detector, classifier,
tracker and settings), fed from the file either as fast as it goes (every frame, none dropped) or paced at the
clip's own frame rate like a camera (`realtime`: frames the loop cannot keep up with are dropped and counted).
Without `--broker`, publishing goes to `SerialisingPublisher`: it builds every payload exactly as `MqttPublisher`
does (the pydantic models of `edged.payloads`, serialised to JSON) and discards it, so the publish stage costs
what it costs in the daemon minus the socket. With `--broker HOST:PORT` the real `MqttPublisher` publishes.

Figures (milliseconds unless named otherwise): per-stage p50/p95 (classify over frames with a face, and per
face), capture-to-publish latency p50/p95/p99, CPU time per frame (all threads: capture and decode included),
peak RSS (`ru_maxrss`), drops. Capture time is when the frame was decoded, or in real-time mode when a camera
would have delivered it (the clip's schedule), whichever is later: decoding ahead of the schedule is not latency.
"""

from __future__ import annotations

import os
import resource
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edged import __version__
from edged.faces import Frame, Track, TrackEvent
from edged.payloads import Event, Face, State, Stats, utc_iso
from edged.pipeline import STAGES, Pipeline, build
from edged.roi import GuidedDetector
from edged.settings import Settings, load_settings
from edged.stats import Rolling

BENCH_DEVICE = "bench"


class SerialisingPublisher:
    """A `Publisher` that builds and serialises every payload like `MqttPublisher`, then discards it.

    It builds and serialises the state on every frame (the MQTT publisher does so only when the faces change or
    the interval is due), so the publish stage it measures is an upper bound of the daemon's, without the socket.
    """

    def __init__(self, model_id: str, device: str = BENCH_DEVICE) -> None:
        self.model_id, self.device = model_id, device
        self.seq = {"events": 0, "state": 0, "stats": 0}
        self.bytes = 0
        self.last: dict[str, str] = {}  # the latest payload per topic name, for a look
        self.events: list[TrackEvent] = []
        self._open = False

    @property
    def connected(self) -> bool:
        return self._open

    @property
    def backlog(self) -> int:
        return 0  # nothing is ever waiting: payloads are discarded once serialised

    def start(self) -> None:
        self._open = True

    def event(self, event: TrackEvent) -> None:
        self.events.append(event)
        self._send("events", Event.from_track_event(event, self.device, self._next("events")).to_json())

    def state(self, tracks: list[Track], ts_utc: float) -> None:
        faces = [Face.from_track(t) for t in tracks]
        self._send("state", State(device=self.device, ts=utc_iso(ts_utc), seq=self._next("state"), faces=faces).to_json())

    def stats(self, stats: dict[str, Any]) -> None:
        payload = Stats(device=self.device, ts=utc_iso(time.time()), seq=self._next("stats"), version=__version__,
                        model_id=self.model_id, cpu_temp_c=None, **stats)
        self._send("stats", payload.to_json())

    def close(self, timeout: float = 5.0) -> None:
        self._open = False

    def _next(self, name: str) -> int:
        self.seq[name] += 1
        return self.seq[name]

    def _send(self, name: str, payload: str) -> None:
        self.bytes += len(payload)
        self.last[name] = payload


@dataclass
class Recorder:
    """Every processed frame's figures (a `FrameRecorder`); `clip_fps` > 0 means paced like a camera."""

    clip_fps: float = 0.0
    faces: list[int] = field(default_factory=list)
    stages_ms: list[tuple[float, float, float, float]] = field(default_factory=list)
    latency_ms: list[float] = field(default_factory=list)
    _origin: tuple[float, float] | None = None  # (capture monotonic, media time) of the first frame

    def record(self, frame: Frame, faces: int, stage_s: tuple[float, float, float, float], done_mono: float) -> None:
        captured = frame.captured_mono
        if self.clip_fps > 0:
            self._origin = self._origin or (frame.captured_mono, frame.captured_utc)
            captured = max(captured, self._origin[0] + frame.captured_utc - self._origin[1])
        self.faces.append(faces)
        self.stages_ms.append(tuple(s * 1000.0 for s in stage_s))  # type: ignore[arg-type]
        self.latency_ms.append((done_mono - captured) * 1000.0)


def clip_fps(video: Path) -> float:
    """The frame rate the file declares (0 when it declares none)."""
    import cv2

    cap = cv2.VideoCapture(str(video), cv2.CAP_FFMPEG)
    try:
        return float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
    finally:
        cap.release()


def bench_settings(video: Path, threads: int, realtime: bool, environ: dict[str, str] | None = None) -> Settings:
    """The daemon's settings from the environment (EDGED_*), with the source, pacing and threads of this run."""
    env = dict(os.environ if environ is None else environ)
    env.update({"EDGED_CAMERA__SOURCE": str(video), "EDGED_CAMERA__REALTIME": "true" if realtime else "false",
                "EDGED_DETECTOR__THREADS": str(threads), "EDGED_MODEL__THREADS": str(threads)})
    return load_settings(env)


def _percentiles(values: list[float] | np.ndarray, which: tuple[int, ...] = (50, 95)) -> dict[str, float]:
    data = np.asarray(values, dtype=np.float64)
    if data.size == 0:
        return {f"p{q}": 0.0 for q in which}
    return {f"p{q}": round(float(v), 3) for q, v in zip(which, np.percentile(data, which), strict=True)}


def run_bench(settings: Settings, make_publisher: Any = None) -> dict[str, Any]:
    """Run the pipeline over the whole file and return the figures (see the module docstring)."""
    stop = threading.Event()
    publishers: list[Any] = []

    def publisher_for(model_id: str) -> Any:
        publishers.append(make_publisher(model_id) if make_publisher else SerialisingPublisher(model_id))
        return publishers[0]

    realtime = settings.camera.realtime
    declared_fps = clip_fps(Path(settings.camera.source))
    pipeline: Pipeline = build(settings, publisher_for, stop, keep_faces=False)  # a daemon's record stays its own
    recorder = Recorder(clip_fps=declared_fps if realtime else 0.0)
    pipeline.recorder = recorder
    # Keep every decode time, not the stats topic's rolling window of 300.
    pipeline.capture.decode_ms = pipeline.latency_ms["decode"] = Rolling(window=1_000_000)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    final = pipeline.run()
    wall_s, cpu_s = time.perf_counter() - wall0, time.process_time() - cpu0
    frames = len(recorder.faces)
    stages = np.asarray(recorder.stages_ms, dtype=np.float64).reshape(-1, 4)
    faces = np.asarray(recorder.faces)
    with_faces = faces > 0
    per_stage = {"decode": _percentiles(pipeline.capture.decode_ms.values())}
    for i, stage in enumerate(STAGES[1:]):
        column = stages[with_faces, i] if stage == "classify" else stages[:, i]
        per_stage[stage] = _percentiles(column)
    detector = pipeline.detector
    return {
        "video": str(settings.camera.source),
        "realtime": realtime,
        "clip_fps": round(declared_fps, 3),
        "threads": settings.detector.threads,
        "frames": frames,
        "frames_dropped": final["frames_dropped"],
        "frames_with_faces": int(with_faces.sum()),
        "faces": int(faces.sum()),
        "tracks": final["faces_seen"],
        "fps": round(frames / wall_s, 2) if wall_s > 0 else 0.0,
        "wall_s": round(wall_s, 3),
        "stages_ms": per_stage,
        "classify_per_face_ms": _percentiles(stages[with_faces, 1] / faces[with_faces]),
        "latency_ms": _percentiles(recorder.latency_ms, (50, 95, 99)),
        "cpu_ms_per_frame": round(cpu_s * 1000.0 / frames, 3) if frames else 0.0,
        "cpu_utilisation": round(cpu_s / wall_s, 3) if wall_s > 0 else 0.0,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1),
        "full_scans": detector.full_scans if isinstance(detector, GuidedDetector) else frames,
        "region_scans": detector.region_scans if isinstance(detector, GuidedDetector) else 0,
        "full_scan_every": settings.detector.full_scan_every,
        # The cost of guided detection per frame against a full scan's, measured in this one run.
        "full_scan_ms": _percentiles(getattr(detector, "scan_ms", None) or stages[:, 0]),
        "detect_mean_ms": round(float(stages[:, 0].mean()), 3) if frames else 0.0,
        "guided_to_full_cost": round(float(stages[:, 0].mean()) / float(np.median(getattr(detector, "scan_ms", None)
                                                                                 or stages[:, 0])), 3) if frames else 0.0,
    }


def render(result: dict[str, Any]) -> str:
    """The figures as a few lines of text."""
    r = result
    mode = f"paced at {r['clip_fps']:g} fps" if r["realtime"] else "as fast as possible"
    lines = [
        f"{r['video']}: {r['frames']} frames ({mode}, {r['threads']} thread(s)), {r['frames_dropped']} dropped",
        f"  fps {r['fps']:.1f}   frames with a face {r['frames_with_faces']}   faces {r['faces']}   tracks {r['tracks']}",
        f"  full scans {r['full_scans']}, region scans {r['region_scans']} (full scan every {r['full_scan_every']}); "
        f"a full scan p50 {r['full_scan_ms']['p50']:.2f} ms, detection per frame {r['detect_mean_ms']:.2f} ms on "
        f"average: {r['guided_to_full_cost']:.2f} of a full scan",
        "  stage       p50 ms   p95 ms",
    ]
    for stage, p in r["stages_ms"].items():
        lines.append(f"  {stage:<10} {p['p50']:7.3f}  {p['p95']:7.3f}")
    face, lat = r["classify_per_face_ms"], r["latency_ms"]
    lines += [
        f"  classify per face: p50 {face['p50']:.3f} ms, p95 {face['p95']:.3f} ms",
        f"  capture to publish: p50 {lat['p50']:.2f} ms, p95 {lat['p95']:.2f} ms, p99 {lat['p99']:.2f} ms",
        f"  CPU {r['cpu_ms_per_frame']:.2f} ms per frame ({r['cpu_utilisation']:.2f} of a core), "
        f"peak RSS {r['peak_rss_mb']:.1f} MB",
    ]
    return "\n".join(lines)
