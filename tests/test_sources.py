"""Media the camera layer meets in the field, made at test time from the sample clip (public domain, see
samples/README.md; what is derived from it carries the same terms): phone video with rotation metadata, a file
processed as fast as possible, and GStreamer appsinks in YUV 4:2:0 through Debian's OpenCV (skipped where absent).
"""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import textwrap
import time
from pathlib import Path

import cv2
import pytest
from media import ROOT, SAMPLE_CLIP, rotated_clip

from edged.camera.opencv import OpenCVSource
from edged.detector import HaarDetector
from edged.settings import DetectorSettings

SYSTEM_PYTHON = Path("/usr/bin/python3")


def short_clip(path: Path, frames: int) -> Path:
    """The sample clip's first `frames` frames (the astronaut), 640x480 at 15 fps."""
    source = cv2.VideoCapture(str(SAMPLE_CLIP))
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 15, (640, 480))
    for _ in range(frames):
        ok, image = source.read()
        assert ok
        writer.write(image)
    writer.release()
    source.release()
    return path


def _frames_with_a_face(source: OpenCVSource) -> tuple[int, int, tuple[int, ...]]:
    detector = HaarDetector(DetectorSettings())
    total = with_face = 0
    shape: tuple[int, ...] = ()
    while (frame := source.read()) is not None:
        total += 1
        with_face += bool(detector.detect(frame.gray))
        shape = frame.gray.shape
    return total, with_face, shape


def test_phone_video_with_rotation_metadata_is_turned_upright(tmp_path, caplog):
    clip = rotated_clip(tmp_path / "phone.mp4")
    caplog.set_level(logging.INFO, logger="edged.camera.opencv")
    upright = OpenCVSource("file", str(clip))
    upright.open()
    total, found, shape = _frames_with_a_face(upright)
    sideways = OpenCVSource("file", str(clip))
    sideways.open()
    sideways.rotation = 0  # what edged did before: the frames as stored
    _, found_sideways, shape_sideways = _frames_with_a_face(sideways)
    print(f"\n[rotation] {total} frames: a face in {found} turned upright, {found_sideways} as stored")
    assert upright.rotation == 90 and shape == (480, 640) and shape_sideways == (640, 480)
    assert found >= total * 0.8 and found_sideways < found / 4
    assert any("rotated 90 degrees by its metadata" in r.getMessage() for r in caplog.records)


def test_a_file_processed_as_fast_as_possible_is_never_stamped_in_the_future():
    source = OpenCVSource("file", str(SAMPLE_CLIP), realtime=False)
    opened_at = time.time()
    source.open()
    stamps = []
    while (frame := source.read()) is not None:
        stamps.append(frame.captured_utc)
    read_at = time.time()
    assert len(stamps) == 180
    assert max(stamps) <= read_at, "no stamp in the future"
    # the clip's own intervals (12 s at 15 fps), placed so that it ends about when it was opened
    assert stamps[-1] - stamps[0] == pytest.approx(179 / 15, abs=1e-6)
    assert stamps[-1] <= opened_at + 1.0
    live = OpenCVSource("file", str(SAMPLE_CLIP), realtime=True)
    live.open()
    assert live.read().captured_utc >= opened_at, "played in real time, the clip starts when it is opened"
    live.close()


_GST_SCRIPT = textwrap.dedent("""
    import json, logging, sys
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    import numpy as np
    from edged.camera.opencv import OpenCVSource
    from edged.errors import CameraError
    clip = sys.argv[1]
    out = {}
    frames = {}
    for fmt in ("GRAY8", "I420", "NV12"):
        source = OpenCVSource("gstreamer", "gst:filesrc location=" + clip + " ! qtdemux ! avdec_mpeg4 ! videoconvert ! "
                              "video/x-raw,format=" + fmt + " ! appsink")
        count = 0
        for _ in range(2):  # to the end of the stream, then reopened (as the capture thread does) to its end again
            source.open()
            frames.setdefault(fmt, source.read().gray)
            count += 1
            try:
                while True:
                    source.read()
                    count += 1
            except CameraError:
                source.close()
        out[fmt] = {"shape": list(frames[fmt].shape), "frames": count,
                    "same_as_gray8": bool(np.array_equal(frames[fmt], frames["GRAY8"]))}
    broken = OpenCVSource("gstreamer", "gst:videotestsrc ! nosuchelement ! appsink")
    for _ in range(3):
        try:
            broken.open()
        except CameraError:
            out["malformed_refused"] = out.get("malformed_refused", 0) + 1
    print(json.dumps(out))
""")


def _system_opencv_with_gstreamer() -> bool:
    if not SYSTEM_PYTHON.is_file() or shutil.which("gst-inspect-1.0") is None:
        return False
    probe = subprocess.run([str(SYSTEM_PYTHON), "-c", "import cv2, re; print(re.search(r'GStreamer:\\s+YES', "
                            "cv2.getBuildInformation()) is not None)"], capture_output=True, text=True, timeout=60)
    avdec = subprocess.run(["gst-inspect-1.0", "avdec_mpeg4"], capture_output=True, timeout=60)
    return probe.stdout.strip() == "True" and avdec.returncode == 0


@pytest.mark.skipif(not _system_opencv_with_gstreamer(),
                    reason="needs Debian's python3-opencv with GStreamer and gstreamer1.0-libav "
                           "(apt-get install python3-opencv gstreamer1.0-libav gstreamer1.0-tools)")
def test_gstreamer_appsinks_in_yuv420_give_their_y_plane_and_failures_are_logged_once_with_a_hint(tmp_path):
    clip = short_clip(tmp_path / "short.mp4", frames=20)
    result = subprocess.run([str(SYSTEM_PYTHON), "-c", _GST_SCRIPT, str(clip)], capture_output=True, text=True,
                            timeout=300, cwd=ROOT, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    errors = [line for line in result.stderr.splitlines() if line.startswith("ERROR:edged")]
    for fmt in ("I420", "NV12"):  # OpenCV hands these over as one (480 * 3/2, 640) array: Y rows, then chroma
        assert out[fmt]["shape"] == [480, 640] and out[fmt]["same_as_gray8"], out
    assert all(out[fmt]["frames"] == 40 for fmt in ("GRAY8", "I420", "NV12")), out  # two plays of 20 frames
    end_of_stream = [line for line in errors if "stopped delivering (end of stream" in line]
    assert len(end_of_stream) == 3, errors  # once per source, not once per reopen
    assert "give the file itself as EDGED_CAMERA__SOURCE" in end_of_stream[0]
    malformed = [line for line in errors if "cannot be started" in line]
    assert out["malformed_refused"] == 3 and len(malformed) == 1, errors
    assert "gst-launch-1.0 -v videotestsrc ! nosuchelement ! fakesink" in malformed[0]
