"""The dashboard's history: per-minute aggregates per device in SQLite, kept for a retention period.

One row per (device, minute): how many faces appeared with or changed to each emotion, the sum and count of the
faces-in-view samples (state messages), of the fps samples and of the camera-down samples (stats messages). Rows
are added to (never overwritten), so a restarted dashboard goes on filling the minute it stopped in, and
`series()` sums rows into buckets (a minute, a quarter hour) for one device or for every device whose id starts
with a prefix. Deltas wait in memory and are written by `flush()` (the dashboard calls it every few seconds and
before every query), so the paho thread never waits for the disk. Beside them, one row per device heard from
within the retention (when, its newest payload ts, its status), so a restarted dashboard still lists the kiosks a
broker without persistence has forgotten. One dashboard per file: `<file>.lock` (edged.lockfile) keeps a second
one out.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from edged import lockfile
from edged.errors import ConfigError, ListenError
from edged.fleet import ts_epoch
from edged.paths import why_unwritable
from edged.payloads import EMOTIONS, Event, State, Stats

DATABASE_VARIABLE = "EDGED_DASHBOARD__DATABASE"

MINUTE = 60
_COLUMNS = (*EMOTIONS, "faces_sum", "faces_n", "fps_sum", "fps_n", "camera_down", "stats_n")
_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS minutes (
    device TEXT NOT NULL,
    minute INTEGER NOT NULL,  -- UTC epoch seconds of the minute's start
    {", ".join(f"{c} REAL NOT NULL DEFAULT 0" for c in _COLUMNS)},
    PRIMARY KEY (device, minute)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS minutes_by_time ON minutes (minute);
-- Every device heard from within the retention, so a restarted dashboard shows the ones the broker forgot.
CREATE TABLE IF NOT EXISTS devices (
    device TEXT PRIMARY KEY,
    heard REAL NOT NULL,  -- UTC epoch seconds this dashboard last received anything from it
    last_seen_utc REAL,  -- its newest payload ts
    status TEXT NOT NULL  -- online, offline or unknown, as last known
) WITHOUT ROWID;
"""


class History:
    """Per-minute aggregates in the SQLite file `path` (":memory:" for none), pruned after `retention_s` seconds.

    Thread-safe: `record` is called from the MQTT thread, the rest from the web server's.
    Raises ConfigError (starting `where`: the variable that chose the file, default EDGED_DASHBOARD__DATABASE=path)
    when the path cannot be a file we write or the file is not a SQLite database, ListenError when the disk refuses.
    """

    def __init__(self, path: Path | str, retention_s: float, where: str | None = None) -> None:
        self.path, self.retention_s = path, retention_s
        where = where or f"{DATABASE_VARIABLE}={path}"
        self._lock = threading.Lock()  # the pending deltas
        self._db_lock = threading.Lock()  # the connection
        self._pending: defaultdict[tuple[str, int], defaultdict[str, float]] = defaultdict(lambda: defaultdict(float))
        self._heard: dict[str, tuple[float, float | None, str]] = {}  # device -> (heard, last_seen_utc, status)
        reason = why_unwritable(path) if isinstance(path, Path) else None
        if reason is None and isinstance(path, Path):
            reason = _not_sqlite(path)  # before the lock: a refused path must not gain a `<path>.lock` beside it
        if reason is not None:
            raise ConfigError(f"{where}: {reason}")
        lock_existed = Path(f"{path}.lock").exists()
        self._lock_file = self._own(Path(path), where) if str(path) != ":memory:" else None
        try:
            self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
            self._db.executescript("PRAGMA journal_mode=WAL;" + _SCHEMA)
        except sqlite3.OperationalError as exc:  # locked, full, an I/O error: may pass
            self._release(remove=not lock_existed)
            raise ListenError(f"cannot open the dashboard history {path} ({where}): {exc}") from None
        except sqlite3.DatabaseError as exc:  # another kind of file: waiting will not change it
            self._release(remove=not lock_existed)
            raise ConfigError(f"{where}: {path} is not a dashboard history ({exc}): name another file") from None

    @staticmethod
    def _own(path: Path, where: str) -> int:
        """The lock on `<path>.lock`: rows are added to, so two dashboards on one file would count everything twice.
        The second stops (ListenError: exit 69, as a second daemon on one EDGED_STATE_DIR does)."""
        lock = Path(f"{path}.lock")
        try:
            return lockfile.acquire(lock)
        except lockfile.InUse as exc:
            raise ListenError(f"another edged dashboard (pid {exc.holder}) is using the history {path} ({where}): "
                              f"stop it, or give this one its own {DATABASE_VARIABLE}") from None
        except OSError as exc:
            raise ListenError(f"cannot lock the dashboard history {lock} ({where}): {exc.strerror or exc}") from None

    def _release(self, *, remove: bool = False) -> None:
        """Let go of the lock; `remove`: also delete the lock file (it was made by this start, which is refused)."""
        if self._lock_file is not None:
            if remove:
                with contextlib.suppress(OSError):
                    os.unlink(f"{self.path}.lock")
            os.close(self._lock_file)
            self._lock_file = None

    def record(self, message: Event | State | Stats, now: float) -> None:
        """Count one payload folded into the fleet view at `now` (UTC epoch seconds) into its minute."""
        if isinstance(message, Event):
            if message.type == "face_left" or message.emotion not in EMOTIONS:
                return
            # An event belongs to when it happened (an outbox replays old ones after an outage), unless its
            # time is in the future or older than the retention: a device's clock is not trusted that far.
            when = ts_epoch(message.ts)
            at = when if now - self.retention_s < when <= now + MINUTE else now
            self._add(message.device, at, {message.emotion: 1})
        elif isinstance(message, State):
            self._add(message.device, now, {"faces_sum": len(message.faces), "faces_n": 1})
        elif isinstance(message, Stats):
            self._add(message.device, now, {"fps_sum": message.fps, "fps_n": 1,
                                            "camera_down": 0 if message.camera_ok else 1, "stats_n": 1})

    def heard(self, device: str, now: float, last_seen_utc: float | None, status: str) -> None:
        """Remember that `device` was heard from at `now`, its newest payload ts and its status (written by flush)."""
        with self._lock:
            self._heard[device] = (now, last_seen_utc, status)

    def forget(self, device: str) -> None:
        """Stop remembering `device` (retired: its retained status was cleared); its minutes stay in the trends."""
        with self._lock:
            self._heard.pop(device, None)
        with self._db_lock:
            self._db.execute("DELETE FROM devices WHERE device = ?", (device,))

    def devices(self) -> list[tuple[str, float | None, str]]:
        """(device, last seen UTC, last known status) of every device heard from within the retention."""
        self.flush(time.time())
        with self._db_lock:
            return self._db.execute("SELECT device, last_seen_utc, status FROM devices ORDER BY device").fetchall()

    def _add(self, device: str, at: float, counts: dict[str, float]) -> None:
        with self._lock:
            row = self._pending[(device, int(at // MINUTE * MINUTE))]
            for column, value in counts.items():
                row[column] += value

    def flush(self, now: float) -> int:
        """Write the pending deltas and prune what is older than the retention; returns the rows written."""
        with self._lock:
            pending, self._pending = self._pending, defaultdict(lambda: defaultdict(float))
            heard, self._heard = self._heard, {}
        rows = [(device, minute, *(counts.get(c, 0.0) for c in _COLUMNS)) for (device, minute), counts in pending.items()]
        with self._db_lock:
            updates = ", ".join(f"{c} = {c} + excluded.{c}" for c in _COLUMNS)
            self._db.execute("BEGIN")
            try:
                self._db.executemany(
                    f"INSERT INTO minutes (device, minute, {', '.join(_COLUMNS)}) "
                    f"VALUES ({', '.join('?' * (len(_COLUMNS) + 2))}) ON CONFLICT (device, minute) DO UPDATE SET {updates}",
                    rows)
                self._db.execute("DELETE FROM minutes WHERE minute < ?", (now - self.retention_s,))
                self._db.executemany(
                    "INSERT INTO devices (device, heard, last_seen_utc, status) VALUES (?, ?, ?, ?) ON CONFLICT (device) "
                    "DO UPDATE SET heard = excluded.heard, last_seen_utc = COALESCE(excluded.last_seen_utc, last_seen_utc), "
                    "status = excluded.status", [(device, *row) for device, row in heard.items()])
                self._db.execute("DELETE FROM devices WHERE heard < ?", (now - self.retention_s,))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            return len(rows)

    def series(self, now: float, span_s: float, bucket_s: int, *, device: str | None = None,
               group: str = "") -> dict[str, Any]:
        """Buckets of `bucket_s` seconds over the last `span_s` seconds, of `device` or of every device whose id
        starts with `group` ("" = the whole fleet): {"t": [bucket start, UTC epoch s], "emotions": {label: [events]},
        "faces": [mean faces in view or None], "fps": [mean fps or None], "camera_ok": [share 0-1 or None]}.
        Every bucket is there. One with no sample at all (no event counted, no state, no stats) is None in every list,
        emotions too: nothing was heard, which is not zero faces (before a kiosk or the dashboard existed, while it
        was down); one with samples but no events has zero events."""
        self.flush(now)
        first = int((now - span_s) // bucket_s * bucket_s) + bucket_s
        starts = list(range(first, int(now // bucket_s * bucket_s) + 1, bucket_s))
        sums = ", ".join(f"SUM({c})" for c in _COLUMNS)
        where, args = ("device = ?", [device]) if device is not None else ("substr(device, 1, ?) = ?", [len(group), group])
        with self._db_lock:
            found = self._db.execute(
                f"SELECT minute / ? * ? AS bucket, {sums} FROM minutes WHERE minute >= ? AND {where} GROUP BY bucket",
                [bucket_s, bucket_s, first, *args]).fetchall()
        by_start = {int(row[0]): dict(zip(_COLUMNS, row[1:], strict=True)) for row in found}
        out: dict[str, Any] = {"t": starts, "bucket_s": bucket_s, "emotions": {e: [] for e in EMOTIONS},
                               "faces": [], "fps": [], "camera_ok": []}
        for start in starts:
            row = by_start.get(start)
            for emotion in EMOTIONS:
                out["emotions"][emotion].append(int(row[emotion]) if row else None)
            out["faces"].append(_mean(row, "faces_sum", "faces_n"))
            out["fps"].append(_mean(row, "fps_sum", "fps_n"))
            down = _mean(row, "camera_down", "stats_n")
            out["camera_ok"].append(None if down is None else round(1 - down, 3))
        return out

    def rows(self) -> int:
        """Rows in the database (after a flush): what the retention bounds."""
        with self._db_lock:
            return self._db.execute("SELECT COUNT(*) FROM minutes").fetchone()[0]

    def close(self, now: float) -> None:
        """Write what is pending and close the file."""
        try:
            self.flush(now)
        finally:
            self._db.close()
            self._release()


SQLITE_HEADER = b"SQLite format 3\x00"  # the first 16 bytes of every SQLite 3 database (sqlite.org/fileformat.html)


def _not_sqlite(path: Path) -> str | None:
    """Why `path` cannot be a history: an existing, non-empty file that is not SQLite (None when it may be one)."""
    try:
        with path.open("rb") as f:
            head = f.read(len(SQLITE_HEADER))
    except FileNotFoundError:
        return None
    except OSError as exc:
        return f"{path} cannot be read ({exc.strerror or exc})"
    if head and head != SQLITE_HEADER:
        return f"{path} is not a dashboard history (not an SQLite database): name another file"
    return None


def _mean(row: dict[str, float] | None, total: str, count: str) -> float | None:
    return round(row[total] / row[count], 2) if row and row[count] else None
