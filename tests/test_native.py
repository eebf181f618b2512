"""What native libraries write to file descriptor 2 is held while edged asks them something, and passed on at will."""

from __future__ import annotations

import os
import resource

from edged.native import captured_stderr, pass_on


def test_captured_stderr_holds_what_is_written_to_fd_2(capfd):
    with captured_stderr() as lines:
        os.write(2, b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\n\nPremature end of JPEG file\n")
    assert lines == ["INFO: Created TensorFlow Lite XNNPACK delegate for CPU.", "Premature end of JPEG file"]
    assert capfd.readouterr().err == ""
    pass_on(lines[1:])
    assert capfd.readouterr().err == "Premature end of JPEG file\n"


def test_nothing_breaks_when_no_byte_may_be_written_anywhere(capfd):
    # RLIMIT_FSIZE 0, as on a full disk: the hold cannot keep anything, and the call inside still runs.
    limits = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, limits[1]))
    try:
        with captured_stderr() as lines:
            ran = True
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, limits)
    assert ran and lines == []
