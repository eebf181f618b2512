"""Every figure of the performance table (docs/performance.md, README), measured in one run.

    .venv/bin/python bench/perf.py [--fer-python /work/venv-fer/bin/python] [--json]

Runs, each in its own process:
1. real time on one core: `taskset -c 0 edged bench samples/faces-30fps.mp4 --realtime` (640x480, 30 fps);
2. as fast as possible on one core, tracker-guided (the default) and with a full scan of every frame
   (`EDGED_DETECTOR__FULL_SCAN_EVERY=1`), on samples/faces.mp4;
3. edged against fer on samples/faces.mp4 with 1 and 2 threads (`bench/compare_fer.py`; skipped, and said so,
   when fer's venv is missing);
4. the classifier alone on one core: the invoke, and the daemon's whole per-face path (`bench/classify.py`).
The machine should be quiet: every figure is a wall-clock time.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


def _one_core(command: list[str]) -> list[str]:
    taskset = shutil.which("taskset")
    return [taskset, "-c", "0", *command] if taskset else command


def _run(command: list[str], **env: str) -> str:
    done = subprocess.run(command, capture_output=True, text=True, env={**ENV, **env}, cwd=ROOT)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return done.stdout


def bench(video: str, *flags: str, **env: str) -> dict:
    out = _run(_one_core([PYTHON, "-m", "edged", "bench", video, "--threads", "1", "--json", *flags]), **env)
    return json.loads(out.strip().splitlines()[-1])


def classify() -> dict[str, float]:
    out = _run(_one_core([PYTHON, "bench/classify.py", "--repeats", "3000"]))
    found = {}
    for line in out.splitlines():
        match = re.search(r"(invoke only|with (\d) face).*median ([\d.]+) ms/face, p95 ([\d.]+)", line)
        if match:
            key = "invoke" if match.group(1) == "invoke only" else f"classify_{match.group(2)}"
            found[key] = float(match.group(3))
            found[key + "_p95"] = float(match.group(4))
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fer-python", type=Path, default=Path(os.environ.get("FER_PYTHON", "/work/venv-fer/bin/python")))
    parser.add_argument("--json", action="store_true", help="print one JSON object with every figure")
    args = parser.parse_args()

    figures: dict = {
        "realtime_30fps": bench("samples/faces-30fps.mp4", "--realtime"),
        "guided": bench("samples/faces.mp4"),
        "full_every_frame": bench("samples/faces.mp4", EDGED_DETECTOR__FULL_SCAN_EVERY="1"),
        "classifier": classify(),
    }
    for threads in (1, 2):
        if args.fer_python.is_file():
            out = _run([PYTHON, "bench/compare_fer.py", "samples/faces.mp4", "--threads", str(threads), "--json",
                        "--fer-python", str(args.fer_python)])
            figures[f"fer_{threads}"] = json.loads(out.strip().splitlines()[-1])
    if args.json:
        print(json.dumps(figures))
        return 0

    rt, guided, full, cls = figures["realtime_30fps"], figures["guided"], figures["full_every_frame"], figures["classifier"]
    rows = [
        ("30 fps 640x480 in real time, one core", f"{rt['frames']} frames, {rt['frames_dropped']} dropped, "
         f"{rt['fps']:.1f} fps, {rt['cpu_utilisation']:.2f} of the core"),
        ("capture to publish, real time (p50 / p95 / p99)",
         f"{rt['latency_ms']['p50']:.1f} / {rt['latency_ms']['p95']:.1f} / {rt['latency_ms']['p99']:.1f} ms"),
        ("as fast as possible, one core: guided / full scan every frame", f"{guided['fps']:.0f} / {full['fps']:.0f} fps"),
        ("detect p50 / p95, guided", f"{guided['stages_ms']['detect']['p50']:.1f} / "
         f"{guided['stages_ms']['detect']['p95']:.1f} ms"),
        ("detect p50 / p95, full scan every frame", f"{full['stages_ms']['detect']['p50']:.1f} / "
         f"{full['stages_ms']['detect']['p95']:.1f} ms"),
        ("frames with a face: guided / full (of 180)", f"{guided['frames_with_faces']} / {full['frames_with_faces']}"),
        ("CPU per frame: guided / full", f"{guided['cpu_ms_per_frame']:.1f} / {full['cpu_ms_per_frame']:.1f} ms"),
        ("per face: invoke / classify() 1 face / 8 faces per invoke (median)",
         f"{cls.get('invoke', 0):.3f} / {cls.get('classify_1', 0):.3f} / {cls.get('classify_8', 0):.3f} ms"),
        ("per face in the pipeline (p50)", f"{guided['classify_per_face_ms']['p50']:.3f} ms"),
        ("peak RSS (edged bench, real time)", f"{rt['peak_rss_mb']:.0f} MB"),
    ]
    for threads in (1, 2):
        fer = figures.get(f"fer_{threads}")
        if fer is None:
            rows.append((f"edged / fer, {threads} thread(s)", f"skipped: no {args.fer_python} (see bench/compare_fer.py)"))
            continue
        rows.append((f"edged / fer, {threads} thread(s): fps (frames with a face)",
                     f"{fer['edged']['fps']:.0f} / {fer['fer']['fps']:.1f} = {fer['fps_ratio']:.1f}x "
                     f"({fer['edged']['frames_with_faces']} / {fer['fer']['frames_with_faces']})"))
    print("| Figure | Measured |\n|---|---|")
    for name, value in rows:
        print(f"| {name} | {value} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
