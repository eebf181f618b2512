"""Guided against full-scan detection on every test clip: frames with a face found by each, and the per-frame
detection cost (p50/p95/p99 ms) of each, measured in one run per clip, in line (deterministic, as a file processed
as fast as possible). Live sources run the periodic and retry scans beside the loop instead (see edged.roi):
`edged bench VIDEO --realtime` measures that.

    .venv/bin/python bench/guided.py            # the clips of samples/clips.py, the sample clips and a phone clip
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "samples"))

import clips  # noqa: E402  (samples/clips.py)

from edged.camera.opencv import OpenCVSource  # noqa: E402
from edged.detector import HaarDetector  # noqa: E402
from edged.roi import GuidedDetector  # noqa: E402
from edged.settings import DetectorSettings  # noqa: E402


def measure(clip: Path, settings: DetectorSettings) -> dict:
    source = OpenCVSource("file", str(clip), realtime=False)
    source.open()
    full, guided = HaarDetector(settings), GuidedDetector(HaarDetector(settings), settings.full_scan_every)
    found = {"full": 0, "guided": 0}
    ms: dict[str, list[float]] = {"full": [], "guided": []}
    while (frame := source.read()) is not None:
        for name, detector in (("full", full), ("guided", guided)):
            started = time.perf_counter()
            boxes = detector.detect(frame.gray)
            ms[name].append((time.perf_counter() - started) * 1000.0)
            found[name] += bool(boxes)
    frames = len(ms["full"])
    pct = {name: np.percentile(values, [50, 95, 99]) for name, values in ms.items()}
    return {"clip": clip.name, "frames": frames, **{f"found_{k}": v for k, v in found.items()},
            "pct": pct, "ratio": float(np.mean(ms["guided"]) / np.mean(ms["full"])), "full_scans": guided.full_scans}


def main() -> None:
    settings = DetectorSettings()
    with tempfile.TemporaryDirectory() as tmp:
        paths = [clips.write(name, Path(tmp)) for name in clips.NAMES]
        paths += [ROOT / "samples" / "faces.mp4", ROOT / "samples" / "faces-30fps.mp4",
                  clips.rotated_phone_clip(Path(tmp) / "phone.mp4")]
        print(f"full scan every {settings.full_scan_every} frames; detection ms per frame p50/p95/p99")
        print(f"{'clip':<17}{'frames':>7}{'face: full':>11}{'guided':>7}  {'full p50/p95/p99':>20}"
              f"  {'guided p50/p95/p99':>20}  guided/full  full scans")
        for path in paths:
            r = measure(path, settings)
            f, g = r["pct"]["full"], r["pct"]["guided"]
            print(f"{r['clip']:<17}{r['frames']:>7}{r['found_full']:>11}{r['found_guided']:>7}  "
                  f"{f[0]:6.1f}/{f[1]:5.1f}/{f[2]:5.1f}  {g[0]:6.1f}/{g[1]:5.1f}/{g[2]:5.1f}  "
                  f"{r['ratio']:11.2f}  {r['full_scans']:>10}")


if __name__ == "__main__":
    main()
