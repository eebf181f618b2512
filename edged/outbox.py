"""The durable outbox: every event is on disk before paho sees it, and leaves the disk only on the broker's PUBACK.

One SQLite file, `<EDGED_STATE_DIR>/outbox.sqlite3`, in WAL mode with `synchronous=FULL`: each commit is on
stable storage when `append` returns, so neither SIGKILL nor a power cut loses a spooled event or hands out its
`seq` twice (with NORMAL a power cut may roll back the last commits of the WAL, and a seq already sent could be
reused for another event, which a subscriber would dedupe away). Events are rare (a few a minute per face), so
one fsync per event is cheap; acknowledgements are deleted in batches.

Three tables: `messages` (id, topic, seq, created, payload, mqtt_topic), replayed in id order, `seqs` (topic ->
last seq), so `seq` goes on from where it was after a restart, and `broker_limit`, the packet size limit learned
from the broker's drops, so a restart does not learn it again. The spool is bounded by count and bytes (the oldest events
not yet handed to paho are dropped) and by age (expired events are dropped instead of sent late); both leave a
`seq` gap and are counted. State and stats are not spooled (the next message replaces a lost one); their `seq`
is persisted in blocks of SEQ_BLOCK, so it never goes back but may jump ahead after a restart.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from edged import lockfile
from edged.errors import ConfigError, OutboxError

logger = logging.getLogger(__name__)

FILE_NAME = "outbox.sqlite3"
LOCK_NAME = "outbox.lock"
SCHEMA_VERSION = 2  # 2: messages.mqtt_topic, the topic an event was made for (a renamed device sends old events there)
SEQ_BLOCK = 1000
_SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused: replay order survives an emptied table
    topic TEXT NOT NULL,
    seq INTEGER NOT NULL,
    created REAL NOT NULL,                 -- UTC epoch seconds, for max_age_s
    payload TEXT NOT NULL,
    mqtt_topic TEXT                        -- the full MQTT topic; NULL in rows spooled by schema 1
);
CREATE TABLE IF NOT EXISTS seqs (topic TEXT PRIMARY KEY, seq INTEGER NOT NULL);
-- What edged learned about its broker (edged/brokerlink.py): the smallest message size it refused, for one broker
-- address. An edged of schema 2 without this table ignores it.
CREATE TABLE IF NOT EXISTS broker_limit (broker TEXT PRIMARY KEY, refused INTEGER NOT NULL);
"""


@dataclass(frozen=True)
class Message:
    """One spooled message: `topic` is the topic name (events), `payload` the JSON carrying `seq`, `mqtt_topic` the
    full topic it was made for (None for a message spooled by an edged before schema 2)."""

    id: int
    topic: str
    seq: int
    payload: str
    mqtt_topic: str | None = None


class Outbox:
    """A bounded, ordered, thread-safe spool of QoS 1 messages, with the stored `seq` of every topic.

    `append` spools a message; `take` hands out the next ones not yet handed out, in order; `ack` deletes
    acknowledged ones. Figures since start: `dropped_full` (count or byte cap), `dropped_expired` (max age),
    `write_errors` (the disk refused a write: the event is lost, a gap).
    """

    def __init__(self, path: Path | str, *, max_messages: int = 100_000, max_bytes: int = 50_000_000,
                 max_age_s: float = 86_400.0, clock: Callable[[], float] = time.time) -> None:
        self.path = str(path)
        self.max_messages, self.max_bytes, self.max_age_s = max_messages, max_bytes, max_age_s
        self._clock = clock
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=5.0)
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            check = self._db.execute("PRAGMA quick_check").fetchone()[0]
            if check != "ok":
                raise sqlite3.DatabaseError(f"integrity check failed: {check}")
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            if version not in (0, 1, SCHEMA_VERSION):
                raise sqlite3.DatabaseError(f"schema version {version}, this edged knows {SCHEMA_VERSION}")
            self._db.executescript(_SCHEMA)
            if version == 1:
                self._db.execute("ALTER TABLE messages ADD COLUMN mqtt_topic TEXT")
            self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            self.depth, self.bytes = self._db.execute(
                "SELECT count(*), coalesce(sum(length(payload)), 0) FROM messages").fetchone()
            self._seq = dict(self._db.execute("SELECT topic, seq FROM seqs").fetchall())
        except BaseException:
            self._db.close()
            raise
        self._reserved = dict(self._seq)  # for unspooled topics: the stored block end
        self._handed_upto = 0  # ids up to here are with paho
        self.dropped_full = self.dropped_expired = self.write_errors = 0
        self._failing: str | None = None
        self._lock_file: int | None = None  # a locked descriptor while open: one daemon per state directory

    @classmethod
    def open(cls, state_dir: Path, *, max_messages: int, max_bytes: int, max_age_s: float) -> Outbox:
        """The spool in `state_dir`; a corrupt file is moved aside and a fresh one started.

        ConfigError when `state_dir` cannot be a writable directory; OutboxError when the disk refuses writes.
        """
        where = f"EDGED_STATE_DIR={state_dir}"
        try:
            state_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"{where}: cannot create the state directory: {exc.strerror or exc}") from None
        if not os.access(state_dir, os.W_OK | os.X_OK):
            raise ConfigError(f"{where}: the state directory is not writable by this user")
        path = state_dir / FILE_NAME
        for existing in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
            if existing.exists() and not os.access(existing, os.R_OK | os.W_OK):
                raise ConfigError(f"{where}: {existing} is not writable by this user (uid {os.getuid()}; the file "
                                  f"belongs to uid {existing.stat().st_uid}): fix its owner, or remove it")
        lock = _lock(state_dir, where)
        for attempt in (1, 2):
            try:
                box = cls(path, max_messages=max_messages, max_bytes=max_bytes, max_age_s=max_age_s)
                box._lock_file = lock
                return box
            except sqlite3.OperationalError as exc:
                os.close(lock)
                full = getattr(exc, "sqlite_errorname", "").startswith(("SQLITE_FULL", "SQLITE_IOERR"))
                raise OutboxError(unwritable_message(path, where, str(exc), full)) from None
            except sqlite3.DatabaseError as exc:
                if attempt == 2:
                    os.close(lock)
                    raise OutboxError(f"cannot start a fresh outbox {path}: {exc}") from None
                aside = _move_aside(path)
                logger.error("outbox %s is corrupt (%s): moved to %s, starting an empty one; its events are lost",
                             path, exc, aside)
        raise AssertionError("unreachable")

    @classmethod
    def in_memory(cls) -> Outbox:
        """A spool that lives in memory only: the same ordering and bounds, nothing survives the process."""
        return cls(":memory:")

    def append(self, topic: str, build: Callable[[int], str], mqtt_topic: str | None = None) -> Message | None:
        """Spool the message `build(seq)` with the topic's next seq, to be sent on `mqtt_topic`; None when the disk
        refused it (counted)."""
        with self._lock:
            seq = self._seq.get(topic, 0) + 1
            self._seq[topic] = seq  # taken even if the write fails: the loss then shows as a gap
            payload = build(seq)
            try:
                self._db.execute("BEGIN IMMEDIATE")
                row = self._db.execute(
                    "INSERT INTO messages (topic, seq, created, payload, mqtt_topic) VALUES (?, ?, ?, ?, ?)",
                    (topic, seq, self._clock(), payload, mqtt_topic)).lastrowid
                self._db.execute("INSERT OR REPLACE INTO seqs (topic, seq) VALUES (?, ?)", (topic, seq))
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                self._rollback()
                self.write_errors += 1
                self._report(f"cannot write to the outbox {self.path} ({exc}): events are being lost; "
                             "is the disk of EDGED_STATE_DIR full?")
                return None
            self._recovered()
            self.depth += 1
            self.bytes += len(payload)
            self._enforce_bounds(row)
            return Message(row, topic, seq, payload, mqtt_topic)

    def next_seq(self, topic: str) -> int:
        """The next seq of an unspooled topic (state, stats); stored once every SEQ_BLOCK messages."""
        with self._lock:
            seq = self._seq.get(topic, 0) + 1
            self._seq[topic] = seq
            if seq > self._reserved.get(topic, 0):
                try:
                    self._db.execute("INSERT OR REPLACE INTO seqs (topic, seq) VALUES (?, ?)",
                                     (topic, seq + SEQ_BLOCK - 1))
                    self._reserved[topic] = seq + SEQ_BLOCK - 1
                except sqlite3.Error as exc:
                    self._report(f"cannot write to the outbox {self.path} ({exc})")
            return seq

    def take(self, limit: int) -> list[Message]:
        """Up to `limit` messages not yet handed out, oldest first; expired ones are dropped first."""
        self.expire()
        with self._lock:
            rows = self._db.execute("SELECT id, topic, seq, payload, mqtt_topic FROM messages WHERE id > ? ORDER BY id "
                                    "LIMIT ?",
                                    (self._handed_upto, limit)).fetchall()
            if rows:
                self._handed_upto = rows[-1][0]
            return [Message(*row) for row in rows]

    def rewind(self) -> None:
        """Hand out every message again from the oldest: the MQTT client dropped what it held (a new connection)."""
        with self._lock:
            self._handed_upto = 0

    def ack(self, ids: list[int]) -> None:
        """Delete acknowledged messages (one transaction for the batch)."""
        if not ids:
            return
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                self._delete(f"id IN ({','.join('?' * len(ids))})", ids)
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                # They stay in the spool and are sent again after a restart: a redelivery, not a loss.
                self._rollback()
                self._report(f"cannot delete acknowledged events from the outbox {self.path} ({exc})")

    def expire(self) -> int:
        """Drop messages older than max_age_s that are not with paho yet; returns how many."""
        with self._lock:
            try:
                dropped = self._delete("created < ? AND id > ?", (self._clock() - self.max_age_s, self._handed_upto))
            except sqlite3.Error as exc:
                self._report(f"cannot expire events in the outbox {self.path} ({exc})")
                return 0
            if dropped:
                logger.warning("outbox: dropped %d events older than %.0f s", dropped, self.max_age_s)
            self.dropped_expired += dropped
            return dropped

    def seq(self, topic: str) -> int:
        """The last seq given to `topic` (0 before the first)."""
        with self._lock:
            return self._seq.get(topic, 0)

    def refused_size(self, broker: str) -> int | None:
        """The smallest message size `broker` (host:port) was found to refuse, None when none is known. A limit
        learned for another broker is forgotten: the configuration changed."""
        with self._lock:
            try:
                rows = self._db.execute("SELECT broker, refused FROM broker_limit").fetchall()
            except sqlite3.Error as exc:
                self._report(f"cannot read the outbox {self.path} ({exc})")
                return None
        known = dict(rows)
        if set(known) - {broker}:
            self.set_refused_size(broker, known.get(broker))
        return known.get(broker)

    def set_refused_size(self, broker: str, refused: int | None) -> None:
        """Remember (or with None forget) the size `broker` refused; the only row kept."""
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                self._db.execute("DELETE FROM broker_limit")
                if refused is not None:
                    self._db.execute("INSERT INTO broker_limit (broker, refused) VALUES (?, ?)", (broker, refused))
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                self._rollback()
                self._report(f"cannot write to the outbox {self.path} ({exc})")

    def close(self) -> None:
        with self._lock:
            self._db.close()
            if self._lock_file is not None:
                os.close(self._lock_file)  # releases the flock
                self._lock_file = None

    # -- below: called with self._lock held --

    def _enforce_bounds(self, newest: int) -> None:
        """Drop the oldest messages not with paho (never the newest) until within max_messages and max_bytes."""
        excess_count = self.depth - self.max_messages
        excess_bytes = self.bytes - self.max_bytes
        if excess_count <= 0 and excess_bytes <= 0:
            return
        victims, freed = [], 0
        for row_id, size in self._db.execute(
                "SELECT id, length(payload) FROM messages WHERE id > ? AND id < ? ORDER BY id",
                (self._handed_upto, newest)):
            if len(victims) >= excess_count and freed >= excess_bytes:
                break
            victims.append(row_id)
            freed += size
        if not victims:
            return  # everything older is in flight: the bound is exceeded by at most the in-flight window
        try:
            self._db.execute("BEGIN IMMEDIATE")
            dropped = self._delete(f"id IN ({','.join('?' * len(victims))})", victims)
            self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            self._rollback()
            self._report(f"cannot drop old events from the outbox {self.path} ({exc})")
            return
        if self.dropped_full == 0:
            logger.warning("outbox full (%d events, %d bytes at most): dropping the oldest", self.max_messages,
                           self.max_bytes)
        self.dropped_full += dropped

    def _delete(self, where: str, args: tuple | list) -> int:
        size = self._db.execute(f"SELECT count(*), coalesce(sum(length(payload)), 0) FROM messages WHERE {where}",
                                args).fetchone()
        self._db.execute(f"DELETE FROM messages WHERE {where}", args)
        self.depth -= size[0]
        self.bytes -= size[1]
        return size[0]

    def _rollback(self) -> None:
        try:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            self.depth, self.bytes = self._db.execute(
                "SELECT count(*), coalesce(sum(length(payload)), 0) FROM messages").fetchone()
        except sqlite3.Error:
            pass

    def _report(self, message: str) -> None:
        # Once per distinct failure, not once per event.
        if message != self._failing:
            logger.error("%s", message)
        self._failing = message

    def _recovered(self) -> None:
        if self._failing is not None:
            logger.info("outbox %s is writable again", self.path)
            self._failing = None


def unwritable_message(path: Path, where: str, detail: str, full: bool) -> str:
    """The words for a spool the disk refuses, for `edged run` and `edged check` alike."""
    hint = f": is the disk of {where} full?" if full else f" ({where})"
    return f"cannot write the outbox {path} ({detail}){hint}"


def in_use_message(holder: str, where: str) -> str:
    return (f"another edged process (pid {holder}) is using the outbox in {where}: stop it, or give this one its "
            "own EDGED_STATE_DIR")


def probe(state_dir: Path, size: int = 65536) -> None:
    """What `Outbox.open` would meet, without touching the spool (for `edged check`, which may run as root):
    OutboxError when another edged holds the lock or the disk refuses a write of `size` bytes (removed again)."""
    where = f"EDGED_STATE_DIR={state_dir}"
    try:
        lockfile.check(state_dir / LOCK_NAME)
    except lockfile.InUse as exc:
        raise OutboxError(in_use_message(exc.holder, where)) from None
    try:
        fd, name = tempfile.mkstemp(prefix=".edged-check-", dir=state_dir)
    except OSError as exc:
        raise OutboxError(unwritable_message(state_dir / FILE_NAME, where, exc.strerror or str(exc), True)) from None
    try:
        os.write(fd, b"\0" * size)
        os.fsync(fd)
    except OSError as exc:
        raise OutboxError(unwritable_message(state_dir / FILE_NAME, where, exc.strerror or str(exc), True)) from None
    finally:
        os.close(fd)
        os.unlink(name)


def _lock(state_dir: Path, where: str) -> int:
    """An exclusive lock on `<state_dir>/outbox.lock` (a file descriptor), held until closed or the process dies.

    Two daemons on one spool would each hand out the same `seq` for different events, and subscribers, who
    dedupe on (device, seq), would drop real ones. The second one stops instead (exit 69, edged.lockfile).
    """
    try:
        return lockfile.acquire(state_dir / LOCK_NAME)
    except lockfile.InUse as exc:
        raise OutboxError(in_use_message(exc.holder, where)) from None


def _move_aside(path: Path) -> Path:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    aside = path.with_name(f"{path.name}.corrupt-{stamp}")
    path.replace(aside)
    for suffix in ("-wal", "-shm"):  # they belong to the old file; left here they would be applied to the new one
        extra = Path(f"{path}{suffix}")
        if extra.exists():
            extra.replace(Path(f"{aside}{suffix}"))
    return aside
