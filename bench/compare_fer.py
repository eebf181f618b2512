"""edged against the `fer` package's pipeline on the same clip and the same number of threads, in one run.

    .venv/bin/python bench/compare_fer.py [VIDEO] [--threads 1] [--fer-python /work/venv-fer/bin/python] [--json]

fer (https://pypi.org/project/fer/, MIT) runs in its own virtual environment, never in edged's: it needs
TensorFlow. Make it once (fer's declared dependencies pull in PyTorch and moviepy, which `FER(mtcnn=False)`
never imports, hence --no-deps and the few packages its import needs; OpenCV 4, since OpenCV 5 dropped the
Haar `CascadeClassifier` fer uses):

    python3 -m venv /work/venv-fer
    /work/venv-fer/bin/pip install --no-deps fer==25.10.3
    /work/venv-fer/bin/pip install tensorflow-cpu 'opencv-python-headless==4.11.0.86' pandas tqdm pillow requests 'setuptools<81'

fer's side: `FER(mtcnn=False)` (its Haar cascade at scaleFactor 1.1 on the frame padded by 40 pixels, then its
own 64x64 CNN, as TFLite by default) with one `detect_emotions` call per decoded BGR frame. edged's side:
`edged bench VIDEO --threads N --json` (the daemon's pipeline with its default settings). Both are timed over
the whole clip, decoding included, and both processes are pinned to the first N cores with `taskset` (where
it exists) as well as told to use N threads, so neither borrows a core the other does not have.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_VIDEO = ROOT / "samples" / "faces.mp4"
DEFAULT_FER_PYTHON = Path(os.environ.get("FER_PYTHON", "/work/venv-fer/bin/python"))


def fer_worker(video: str, threads: int) -> dict:
    """Runs inside fer's venv: every frame through FER(mtcnn=False).detect_emotions; prints one JSON line."""
    import cv2
    import tensorflow as tf

    cv2.setNumThreads(threads)
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    from fer.fer import FER  # fer 25.x no longer re-exports FER from the package

    detector = FER(mtcnn=False)
    cap = cv2.VideoCapture(video, cv2.CAP_FFMPEG)
    ok, frame = cap.read()
    if not ok:
        raise SystemExit(f"fer worker: cannot read {video}")
    detector.detect_emotions(frame)  # warm-up: the model loads lazily, like edged's before its first frame
    cap.release()
    cap = cv2.VideoCapture(video, cv2.CAP_FFMPEG)
    frames = with_faces = faces = 0
    started = time.perf_counter()
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        found = detector.detect_emotions(frame)
        frames += 1
        with_faces += bool(found)
        faces += len(found)
    wall_s = time.perf_counter() - started
    import fer

    return {"pipeline": f"fer {fer.__version__} FER(mtcnn=False)", "frames": frames, "frames_with_faces": with_faces,
            "faces": faces, "fps": round(frames / wall_s, 2), "wall_s": round(wall_s, 3)}


def _pinned(command: list[str], threads: int) -> list[str]:
    cores = min(threads, os.cpu_count() or 1)
    taskset = shutil.which("taskset")
    return [taskset, "-c", f"0-{cores - 1}", *command] if taskset else command


def _run_json(command: list[str], env: dict[str, str]) -> dict:
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("video", nargs="?", type=Path, default=DEFAULT_VIDEO)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--fer-python", type=Path, default=DEFAULT_FER_PYTHON, help="the python of fer's venv")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(fer_worker(str(args.video), args.threads)))
        return 0
    if not args.video.is_file():
        parser.error(f"video file {args.video} does not exist")
    if not args.fer_python.is_file():
        parser.error(f"{args.fer_python} does not exist: make fer's venv first (see the top of this file)")
    threads = str(args.threads)
    env = {**os.environ, "OMP_NUM_THREADS": threads, "TF_CPP_MIN_LOG_LEVEL": "2"}
    fer = _run_json(_pinned([str(args.fer_python), __file__, str(args.video), "--threads", threads, "--worker"],
                            args.threads), env)
    edged = _run_json(_pinned([sys.executable, "-m", "edged", "bench", str(args.video), "--threads", threads, "--json"],
                              args.threads), {**env, "PYTHONPATH": str(ROOT)})
    ratio = edged["fps"] / fer["fps"] if fer["fps"] else float("inf")
    result = {"video": str(args.video), "threads": args.threads, "fer": fer,
              "edged": {k: edged[k] for k in ("frames", "frames_with_faces", "faces", "fps", "wall_s")},
              "fps_ratio": round(ratio, 2)}
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"{args.video}, {args.threads} thread(s), both pinned to {min(args.threads, os.cpu_count() or 1)} core(s)")
    print(f"  {'pipeline':<34} {'fps':>7} {'frames':>7} {'with a face':>12}")
    print(f"  {fer['pipeline']:<34} {fer['fps']:7.1f} {fer['frames']:7d} {fer['frames_with_faces']:12d}")
    print(f"  {'edged bench':<34} {edged['fps']:7.1f} {edged['frames']:7d} {edged['frames_with_faces']:12d}")
    print(f"  edged / fer: {ratio:.2f}x the fps; frames with a face: {edged['frames_with_faces']} vs "
          f"{fer['frames_with_faces']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
