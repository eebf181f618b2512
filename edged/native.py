"""Native libraries' own output: TFLite's C++ logger ("INFO: Created TensorFlow Lite XNNPACK delegate for CPU.") and
libjpeg ("Premature end of JPEG file") write to file descriptor 2 with no switch to turn them off, and OpenCV and its
FFmpeg print warnings unless told otherwise. `quiet_opencv` tells OpenCV; `captured_stderr` holds fd 2 around one
native call so the caller can log what was said (at DEBUG) or turn it into a message of its own.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections.abc import Iterator
from typing import IO

QUIET_OPENCV = {"OPENCV_LOG_LEVEL": "ERROR", "OPENCV_FFMPEG_LOGLEVEL": "-8"}  # -8: FFmpeg's AV_LOG_QUIET


@contextlib.contextmanager
def quiet_opencv() -> Iterator[None]:
    """OpenCV's `[ WARN ]` lines and FFmpeg's messages off inside the block, unless the environment sets their levels.

    OpenCV reads these variables when cv2 is first used, so the block must hold the command's whole run; they are
    taken away after it, so that nothing this process starts later inherits them.
    """
    added = {name: value for name, value in QUIET_OPENCV.items() if name not in os.environ}
    os.environ.update(added)
    try:
        yield
    finally:
        for name in added:
            os.environ.pop(name, None)


@contextlib.contextmanager
def captured_stderr() -> Iterator[list[str]]:
    """Collect what is written to file descriptor 2 inside the block; the list is filled when the block ends.

    Python's own sys.stderr is flushed first and goes to the same place meanwhile, so nothing is lost: a caller
    passes on the lines it does not recognise. Without an fd 2 (closed), or anywhere to hold the output, nothing is
    captured.
    """
    lines: list[str] = []
    sys.stderr.flush()
    try:
        held = _holder()
    except OSError:  # no fd 2, no memory file and no writable temporary directory: let it through
        yield lines
        return
    saved = os.dup(2)
    try:
        with held:
            os.dup2(held.fileno(), 2)
            try:
                yield lines
            finally:
                sys.stderr.flush()
                os.dup2(saved, 2)
                held.seek(0)
                lines.extend(line for line in held.read().decode(errors="replace").splitlines() if line.strip())
    finally:
        os.close(saved)


def _holder() -> IO[bytes]:
    """A file in memory (no disk, no temporary directory needed), else a temporary file; OSError when neither."""
    os.fstat(2)  # OSError without an fd 2
    try:
        return os.fdopen(os.memfd_create("edged-stderr"), "w+b")
    except (AttributeError, OSError):
        return tempfile.TemporaryFile()


def pass_on(lines: list[str]) -> None:
    """Write captured lines back to stderr, as they were."""
    if lines:
        sys.stderr.write("".join(f"{line}\n" for line in lines))
        sys.stderr.flush()
