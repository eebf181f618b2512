"""The outbox on real SQLite files: order, stored seq, bounds, age, corruption, a full disk."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from edged.errors import ConfigError, OutboxError
from edged.outbox import FILE_NAME, SEQ_BLOCK, Outbox

ROOT = Path(__file__).resolve().parent.parent


def payload(seq: int, size: int = 0) -> str:
    return json.dumps({"seq": seq, "pad": "x" * size})


def open_box(state: Path, **bounds: float) -> Outbox:
    limits = {"max_messages": 1000, "max_bytes": 1_000_000, "max_age_s": 3600.0, **bounds}
    return Outbox.open(state, **limits)


def test_messages_come_back_in_order_until_acknowledged_even_after_a_restart(tmp_path):
    box = open_box(tmp_path)
    sent = [box.append("events", payload) for _ in range(5)]
    assert [m.seq for m in sent] == [1, 2, 3, 4, 5]
    first = box.take(3)
    assert [m.seq for m in first] == [1, 2, 3] and [m.seq for m in box.take(10)] == [4, 5]
    assert box.take(10) == []  # everything is handed out
    box.ack([first[0].id, first[1].id])
    assert box.depth == 3
    box.close()

    again = open_box(tmp_path)  # a restart: what was not acknowledged is handed out again, in order
    assert again.depth == 3 and [json.loads(m.payload)["seq"] for m in again.take(10)] == [3, 4, 5]
    assert again.append("events", payload).seq == 6  # seq goes on where it was
    again.close()
    wal = sqlite3.connect(tmp_path / FILE_NAME).execute("PRAGMA journal_mode").fetchone()[0]
    assert wal == "wal"


def test_unspooled_topics_never_go_back_after_a_restart(tmp_path):
    box = open_box(tmp_path)
    assert [box.next_seq("state") for _ in range(3)] == [1, 2, 3]
    box.close()
    again = open_box(tmp_path)
    after = again.next_seq("state")
    again.close()
    assert 3 < after <= SEQ_BLOCK + 1  # stored in blocks: it may jump ahead, never back


def test_count_bound_drops_the_oldest_not_handed_out_and_counts(tmp_path):
    box = open_box(tmp_path, max_messages=10)
    box.append("events", payload)
    in_flight = box.take(1)
    for _ in range(14):
        box.append("events", payload)
    assert box.depth == 10 and box.dropped_full == 5
    kept = [m.seq for m in box.take(100)]
    # seq 1 was with paho, so it stays; 2-6 were dropped: a gap the subscriber sees
    assert [m.seq for m in in_flight] == [1] and kept == [7, 8, 9, 10, 11, 12, 13, 14, 15]
    box.close()


def test_byte_bound_drops_the_oldest(tmp_path):
    box = open_box(tmp_path, max_bytes=5000)
    for _ in range(10):
        box.append("events", lambda seq: payload(seq, 900))
    assert box.bytes <= 5000 and box.dropped_full == 10 - box.depth
    assert [m.seq for m in box.take(100)] == list(range(11 - box.depth, 11))
    box.close()


def test_expired_events_are_dropped_instead_of_sent_late(tmp_path):
    now = [1_000_000.0]
    box = Outbox(tmp_path / FILE_NAME, max_age_s=60, clock=lambda: now[0])
    box.append("events", payload)
    box.append("events", payload)
    now[0] += 50
    box.append("events", payload)
    now[0] += 20  # the first two are 70 s old, the third 20 s
    assert [m.seq for m in box.take(10)] == [3]
    assert box.dropped_expired == 2 and box.depth == 1
    box.close()


def test_a_corrupt_spool_is_moved_aside_and_a_fresh_one_started(tmp_path, caplog):
    (tmp_path / FILE_NAME).write_bytes(b"this is not an SQLite database, it is garbage " * 100)
    box = open_box(tmp_path)
    assert box.depth == 0 and box.append("events", payload).seq == 1
    box.close()
    aside = list(tmp_path.glob(f"{FILE_NAME}.corrupt-*"))
    assert len(aside) == 1 and aside[0].read_bytes().startswith(b"this is not")
    assert any("is corrupt" in r.getMessage() and str(aside[0]) in r.getMessage() for r in caplog.records)


def test_a_state_dir_that_cannot_be_a_directory_names_the_variable(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("in the way")
    with pytest.raises(ConfigError, match=r"EDGED_STATE_DIR=.*file/edged: cannot create the state directory"):
        open_box(blocker / "edged")


# A real OS limit, not a mock: RLIMIT_FSIZE makes every write past 150 kB fail, as a full disk does. (Only the child
# process is limited; its output goes to a pipe, which the limit does not cover.)
FULL_DISK = """
import logging, resource, sys
from pathlib import Path
from edged.outbox import Outbox
logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
box = Outbox.open(Path(sys.argv[1]), max_messages=10_000, max_bytes=10**9, max_age_s=3600)
resource.setrlimit(resource.RLIMIT_FSIZE, (150_000, resource.RLIM_INFINITY))
results = [box.append("events", lambda seq: "x" * 1000 + str(seq)) for _ in range(200)]
resource.setrlimit(resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))  # space again
after = box.append("events", lambda seq: str(seq))
print(sum(r is not None for r in results), box.write_errors, box.depth, after.seq, flush=True)
"""


def test_a_full_disk_loses_events_with_one_message_and_recovers(tmp_path):
    result = subprocess.run([sys.executable, "-c", FULL_DISK, str(tmp_path)], cwd=ROOT, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    stored, errors, depth, seq_after = map(int, result.stdout.split())
    assert 0 < stored < 200 and errors == 200 - stored and depth == stored + 1
    assert seq_after == 201  # the lost events kept their numbers: subscribers see the gap
    errors_logged = [line for line in result.stderr.splitlines() if line.startswith("ERROR")]
    assert len(errors_logged) == 1 and "outbox" in errors_logged[0] and "EDGED_STATE_DIR" in errors_logged[0]
    assert "writable again" in result.stderr


def test_a_second_daemon_on_the_same_state_dir_is_refused_until_the_first_closes(tmp_path):
    first = open_box(tmp_path)
    with pytest.raises(OutboxError, match=rf"another edged process \(pid {os.getpid()}\) is using the outbox in "
                                          rf"EDGED_STATE_DIR={tmp_path}"):
        open_box(tmp_path)  # it would hand out the same seqs for other events
    first.close()
    open_box(tmp_path).close()  # released on close (and by the kernel if the process dies)


SOMEONE_ELSE = """
import os, sys
from pathlib import Path
from edged.errors import ConfigError
from edged.outbox import Outbox
os.setgid(65534); os.setuid(65534)  # nobody, after the imports: this Python may live where nobody cannot read
try:
    Outbox.open(Path(sys.argv[1]), max_messages=10, max_bytes=10**6, max_age_s=60)
except ConfigError as exc:
    print(exc)
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to make a file another user cannot write")
def test_an_outbox_file_another_user_owns_is_a_configuration_error_naming_it():
    # A root-owned outbox left by `sudo edged run` in a state dir the service's user can write: not "disk full".
    state = Path(tempfile.mkdtemp(prefix="edged-outbox-owner-"))
    try:
        state.chmod(0o777)
        open_box(state).close()  # root makes outbox.sqlite3, mode 0644
        child = subprocess.run([sys.executable, "-c", SOMEONE_ELSE, str(state)], cwd=ROOT, capture_output=True,
                               text=True, timeout=60)
        assert child.returncode == 0, child.stderr
        assert child.stdout.startswith(f"EDGED_STATE_DIR={state}: {state / FILE_NAME} is not writable by this user "
                                       "(uid 65534; the file belongs to uid 0)"), child.stdout
    finally:
        shutil.rmtree(state)
