"""How often the published emotion changes, per face-minute, on every test clip, for several EDGED_TRACKER__MIN_CHANGE_S
values; and how long after the smile starts the neutral -> happy change of samples/clips.py's smile clip is published.

    .venv/bin/python bench/emotions.py [--min-change 0 0.5 1 1.5 2]

Each clip is detected (guided, in line) and classified once, with the project's model; the tracker is then replayed
over the same detections with each setting, stamping frames with media time (index / fps). 0 is the behaviour
before the setting existed (only the smoothing and the margin).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "samples"))

import clips  # noqa: E402  (samples/clips.py)

from edged.camera.opencv import OpenCVSource  # noqa: E402
from edged.classifier import EmotionClassifier  # noqa: E402
from edged.detector import HaarDetector  # noqa: E402
from edged.faces import Detection  # noqa: E402
from edged.roi import GuidedDetector  # noqa: E402
from edged.settings import load_settings  # noqa: E402
from edged.tracker import Tracker  # noqa: E402


def detections(clip: Path, settings) -> tuple[list[tuple[float, list[Detection]]], float]:
    """[(media time, detections with scores)] of every frame, and the clip's frame rate."""
    source = OpenCVSource("file", str(clip), realtime=False)
    source.open()
    detector = GuidedDetector(HaarDetector(settings.detector), settings.detector.full_scan_every)
    classifier = EmotionClassifier.from_settings(settings.model)
    frames = []
    index = 0
    while (frame := source.read()) is not None:
        boxes = detector.detect(frame.gray)
        scores = classifier.classify(frame.gray, boxes)
        frames.append((index / source._file_fps, [Detection(b, s) for b, s in zip(boxes, scores, strict=True)]))
        index += 1
    return frames, source._file_fps


def replay(frames, tracker_settings) -> tuple[int, float, list]:
    """(emotion_changed events, face-seconds of confirmed tracks, the events)."""
    tracker = Tracker(tracker_settings)
    events = []
    for ts, dets in frames:
        events += tracker.update(dets, ts)
    events += tracker.flush(frames[-1][0])
    changes = [e for e in events if e.type == "emotion_changed"]
    face_s = sum(e.track.dwell_s for e in events if e.type == "face_left")
    return len(changes), face_s, events


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--min-change", nargs="+", type=float, default=[0.0, 0.5, 1.0, 1.5, 2.0])
    args = parser.parse_args()
    settings = load_settings({})
    with tempfile.TemporaryDirectory() as tmp:
        paths = [clips.write(name, Path(tmp)) for name in clips.NAMES]
        paths += [ROOT / "samples" / "faces.mp4", ROOT / "samples" / "faces-30fps.mp4"]
        print("emotion_changed per face-minute (changes / face-seconds), by EDGED_TRACKER__MIN_CHANGE_S")
        print(f"{'clip':<18}" + "".join(f"{v:>16g}" for v in args.min_change))
        smile_delay = {}
        for path in paths:
            frames, _ = detections(path, settings)
            row = f"{path.name:<18}"
            for value in args.min_change:
                tracker = settings.tracker.model_copy(update={"min_change_s": value})
                changes, face_s, events = replay(frames, tracker)
                per_minute = changes / face_s * 60 if face_s else 0.0
                row += f"{per_minute:>8.1f} ({changes:>2}/{face_s:4.1f})"
                if path.stem == "smile":
                    happy = [e.ts_utc for e in events if e.type == "emotion_changed" and e.track.emotion == "happy"]
                    smile_delay[value] = (happy[0] - clips.SMILE_AT_S) if happy else None
            print(row)
        print(f"smile clip: neutral -> happy published this long after the smile starts at {clips.SMILE_AT_S} s "
              "(the cross-fade takes 0.2 s):")
        for value, delay in smile_delay.items():
            print(f"  min_change_s {value:g}: " + ("never" if delay is None else f"{delay:.2f} s"))


if __name__ == "__main__":
    main()
