"""The fleet model behind `edged watch`: every device under one topic prefix, folded from its MQTT messages.

No I/O and no clock of its own (callers pass `now`, UTC epoch seconds), so it can be fed by a live subscriber,
a test, or a recorded capture. Per device: online state, last seen, fps, faces, the emotion mix over a window,
and the `seq` stream of each topic checked for gaps, duplicates and resets (docs/mqtt.md, "seq"):

- a **gap** (41 then 44) is loss: 42 and 43 are counted lost until they turn up late;
- the **same seq with the same `ts`** is one message delivered twice (a QoS 1 redelivery, or a retained message
  seen again after a reconnect): a duplicate;
- a **smaller (or equal) seq** that is neither missing nor a duplicate is a reset (the device lost its counter):
  counting starts again;
- on `state` and `stats`, latest-value topics whose `seq` is stored in blocks of 1000 and jumps ahead after a device
  restarts, a jump is not loss: only `events` count lost messages;
- after the watcher's own connection to the broker was down (`FleetView.resync`), a jump is not counted either: what
  the devices published meanwhile never reached this subscriber, which says nothing about the devices.

An offline device's last fps, faces and camera state are history, not the present: its snapshot gives them as None
(`DeviceView.live`), and the fleet's faces in view count live devices only.

Alerts: a device `unseen` (remembered from before by a caller that keeps history, nothing heard since),
`offline`, a device `stale` (online but its newest payload is older than `stale_s`), `camera`
(online, but its stats say the camera is lost), `no_frames` (online with a camera, but its stats say it processes
no frames; not while it is starting: up less than STARTUP_GRACE_S and no frame yet, as a camera takes seconds to
open), events `lost` (a gap in the events `seq`, the topic where every message matters), `reset`, and
`no_devices` when nothing at all was seen under the prefix (a wrong prefix or broker, or an empty fleet).

Everything from MQTT is untrusted: a payload of any shape (not JSON, not the contract, nested thousands of levels
deep) is counted as malformed, per device where the topic names one, and never raised.
"""

from __future__ import annotations

import functools
import json
from array import array
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, get_args, get_origin

from pydantic import BaseModel, ValidationError

from edged.payloads import STATUS_OFFLINE, STATUS_ONLINE, Event, Face, State, Stats

_MODELS = {"events": Event, "state": State, "stats": Stats}


def _known_fields(model: type[BaseModel], data: Any) -> Any:
    """`data` without the keys `model` does not know, at every level: payload version 1 may gain fields (the
    contract's rule: consumers ignore what they do not know), and the publishing models forbid extras."""
    return _trimmer(model)(data)


Trim = Callable[[Any], Any]


@functools.cache
def _trimmer(model: type[BaseModel]) -> Trim:
    # Worked out once per model, not per message: a dashboard folds in thousands of messages a second.
    fields = [(name, _value_trimmer(field.annotation)) for name, field in model.model_fields.items()]

    def trim(data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        return {name: data[name] if fit is None else fit(data[name]) for name, fit in fields if name in data}

    return trim


@functools.cache
def _value_trimmer(annotation: Any) -> Trim | None:
    """How to trim a value of `annotation`; None when it holds no model (kept as it is)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return _trimmer(annotation)
    args = get_args(annotation)
    if get_origin(annotation) is list and args:
        item = _value_trimmer(args[0])
        return None if item is None else lambda value: [item(v) for v in value] if isinstance(value, list) else value
    models = [a for a in args if isinstance(a, type) and issubclass(a, BaseModel)]  # Optional[Model] and unions
    if len(models) != 1:
        return None
    one = _trimmer(models[0])
    return lambda value: one(value) if isinstance(value, dict) else value


RECENT_SEQS = 4096  # how many recent seqs are remembered (with their ts) to tell a duplicate from a reset
MAX_GAPS = 64  # missing seq ranges remembered, so a late one is recognised
RECENT_EVENTS = 10  # latest events kept per device
# A daemon's first stats go out as it starts, before the camera delivers (fps 0, frames 0): no `no_frames` alert
# until it has been up this long (seconds, by its own uptime_s) or has processed a frame.
STARTUP_GRACE_S = 30.0
EMOTION_BUCKETS = 60  # the emotion window is kept as this many counts per device, whatever the event rate


@dataclass
class SeqStream:
    """The `seq` numbers of one device's topic: what arrived, what is missing, what came twice.

    Memory is fixed, whatever the traffic: 8 bytes per remembered seq (`keep`) and at most MAX_GAPS missing ranges.
    """

    last: int | None = None
    lost: int = 0  # skipped and not (yet) arrived
    duplicates: int = 0
    resets: int = 0
    late: int = 0  # arrived after a bigger seq had: out of order, no longer lost
    latest_value: bool = False  # state and stats: a jump ahead is expected (seq in blocks), nothing is missing
    skipped: int = 0  # seqs jumped over without counting them lost (latest-value topics, or after a resync)
    gaps: list[tuple[int, int]] = field(default_factory=list)  # (first, last) missing seq of each gap, newest last
    keep: int = RECENT_SEQS  # how many recent seqs are remembered
    # (first, last) of each range still missing, oldest first; a range forgotten (beyond MAX_GAPS) stays lost
    _missing: list[tuple[int, int]] = field(default_factory=list)
    # hash((seq, ts)) of the latest message whose seq is this slot modulo `keep`; 0: none. Made at the first message.
    _recent: array[int] | None = None
    _resync: bool = False  # the next jump ahead is not loss (the watcher was away)

    def resync(self) -> None:
        """The subscriber was disconnected: the next jump ahead is what it missed, not what the device lost."""
        self._resync = True

    def add(self, seq: int, ts: str) -> str:
        """Fold in one message's seq and ts; returns what it was: ok, gap, skip (a jump that is not loss: see
        `latest_value` and `resync`), duplicate, late or reset."""
        if self._recent is None:
            self._recent = array("q", bytes(8 * self.keep))
        slot, mark = seq % self.keep, hash((seq, ts)) or 1
        if self._recent[slot] == mark:
            self.duplicates += 1
            return "duplicate"
        kind, resync, self._resync = "ok", self._resync, False
        if self.last is None or seq == self.last + 1:
            self.last = seq
        elif seq > self.last + 1 and (self.latest_value or resync):
            self.skipped += seq - self.last - 1
            self.last, kind = seq, "skip"
        elif seq > self.last + 1:
            first, last = self.last + 1, seq - 1
            self.lost += last - first + 1
            self.gaps = [*self.gaps[-9:], (first, last)]
            self._missing.append((first, last))
            del self._missing[:-MAX_GAPS]
            self.last, kind = seq, "gap"
        elif self._arrived_late(seq):
            self.lost -= 1
            self.late += 1
            kind = "late"
        else:
            self.resets += 1
            self._missing.clear()
            self._recent = array("q", bytes(8 * self.keep))
            self.last, kind = seq, "reset"
        self._recent[slot] = mark
        return kind

    def _arrived_late(self, seq: int) -> bool:
        """Takes `seq` out of the missing ranges; False when it was not missing."""
        for i, (first, last) in enumerate(self._missing):
            if first <= seq <= last:
                keep = [(a, b) for a, b in ((first, seq - 1), (seq + 1, last)) if a <= b]
                self._missing[i:i + 1] = keep
                del self._missing[:-MAX_GAPS]
                return True
        return False


def seq_streams(keep: int) -> dict[str, SeqStream]:
    """One SeqStream per topic of a device: `events` counts loss, `state` and `stats` are latest-value topics."""
    return {kind: SeqStream(keep=keep, latest_value=kind != "events") for kind in _MODELS}


@dataclass
class DeviceView:
    """What is known about one device."""

    device: str
    status: str = "unknown"
    status_since: float | None = None  # when this watcher saw the status change (UTC epoch seconds)
    last_seen_utc: float | None = None  # the newest payload `ts`, so a stale retained message does not look fresh
    fps: float | None = None
    stats: Stats | None = None
    faces: list[Face] = field(default_factory=list)
    seq: dict[str, SeqStream] = field(default_factory=lambda: seq_streams(RECENT_SEQS))
    # (bucket number, emotions counted in it) of the events within the window, oldest first: at most
    # EMOTION_BUCKETS + 1 (FleetView.emotion_bucket_s wide), whatever the event rate
    emotions: deque[tuple[int, Counter[str]]] = field(default_factory=deque)
    emotion_counts: Counter[str] = field(default_factory=Counter)  # of `emotions`, kept as they come and go
    recent: deque[Event] = field(default_factory=lambda: deque(maxlen=RECENT_EVENTS))  # this device's, newest first
    malformed: int = 0  # payloads on this device's topics that are not the contract
    last_malformed: str | None = None  # why the latest one was refused
    remembered: str | None = None  # known from before (a dashboard's history), nothing heard since: its last status

    @property
    def live(self) -> bool:
        """Whether its fps, faces and camera state are current: online (an offline device's are its last ones; a
        device whose status is unknown, remembered from before or never said, has told nothing current)."""
        return self.status == STATUS_ONLINE

    @property
    def events_lost(self) -> int:
        return self.seq["events"].lost

    def health(self, now: float, stale_s: float) -> str:
        """online, offline, stale (online but nothing newer than `stale_s` seconds) or unknown (no status yet)."""
        if self.status == STATUS_ONLINE and self.last_seen_utc is not None and now - self.last_seen_utc > stale_s:
            return "stale"
        return self.status


@dataclass(frozen=True)
class Alert:
    device: str
    kind: str  # unseen, offline, stale, camera, no_frames, lost, reset, no_devices
    detail: str


def ts_epoch(ts: str) -> float:
    """A contract `ts` (ISO 8601, UTC, ending in Z) as UTC epoch seconds."""
    return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()


class FleetView:
    """Devices, their faces, emotions and seq health, and recent events, from the messages under one prefix."""

    def __init__(self, prefix: str, *, window_s: float = 300.0, stale_s: float = 60.0, max_events: int = 15,
                 recent_seqs: int = RECENT_SEQS) -> None:
        """`recent_seqs`: per device and topic, how many recent (seq, ts) are kept to tell a duplicate from a reset
        (memory: 8 bytes each, taken at the device's first message on the topic)."""
        self.prefix = prefix
        self.recent_seqs = recent_seqs
        self.window_s = window_s
        self.emotion_bucket_s = window_s / EMOTION_BUCKETS
        self.stale_s = stale_s
        self.devices: dict[str, DeviceView] = {}
        self.events: deque[Event] = deque(maxlen=max_events)
        self.rejected = 0  # messages that are not contract payloads

    def apply(self, topic: str, payload: bytes, now: float) -> Event | State | Stats | None:
        """Fold in one message received at `now`; malformed ones are counted in `rejected`, never raised.
        Returns the payload folded in (None for a status, a duplicate or a malformed message), for callers that
        keep more than the view does (the dashboard's history)."""
        parts = topic.split("/")
        if len(parts) < 3 or parts[0] != self.prefix:
            self.rejected += 1
            return None
        device_id, kind = parts[1], "/".join(parts[2:])  # a deeper topic is the device's too: an unknown one
        if not payload:  # an empty payload clears a retained message: a cleared status retires the device
            if kind == "status":
                self.devices.pop(device_id, None)
            return None
        device = self.devices.get(device_id)
        if device is None:
            device = self.devices[device_id] = DeviceView(
                device_id, seq=seq_streams(self.recent_seqs))
        device.remembered = None
        if kind == "status":
            status = payload.decode("utf-8", "replace")
            if status not in (STATUS_ONLINE, STATUS_OFFLINE):
                self._malformed(device, f"status {status[:40]!r} is neither online nor offline")
            elif status != device.status:
                device.status, device.status_since = status, now
            return None
        model = _MODELS.get(kind)
        if model is None:
            self._malformed(device, f"unknown topic {kind[:40]!r}")
            return None
        try:
            # Fast path: a payload of exactly the contract, parsed and checked in one go. Anything else (fields
            # this release does not know, or not the contract at all) takes the careful path below.
            message = model.model_validate_json(payload)
        except ValidationError:
            message = None
        try:
            if message is None:
                message = model.model_validate(_known_fields(model, json.loads(payload)))
        except ValidationError as exc:  # JSON, but not the contract
            self._malformed(device, f"{kind}: {exc.error_count()} fields not in the contract")
            return None
        except (ValueError, TypeError, RecursionError) as exc:  # not JSON (or nested too deep to read)
            self._malformed(device, f"{kind}: not JSON ({type(exc).__name__})")
            return None
        if device.seq[kind].add(message.seq, message.ts) == "duplicate":
            return None  # already folded in
        device.last_seen_utc = max(device.last_seen_utc or 0.0, ts_epoch(message.ts))
        if isinstance(message, Event):
            self.events.appendleft(message)
            device.recent.appendleft(message)
            if message.type != "face_left":  # an emotion shown from now on: appeared, or changed to
                bucket = int(now // self.emotion_bucket_s)
                if not device.emotions or device.emotions[-1][0] < bucket:
                    device.emotions.append((bucket, Counter()))
                    self._expire_emotions(device, now)
                device.emotions[-1][1][message.emotion] += 1
                device.emotion_counts[message.emotion] += 1
        elif isinstance(message, State):
            device.faces = message.faces
        elif isinstance(message, Stats):
            device.stats, device.fps = message, message.fps
        return message

    def remember(self, device: str, last_seen_utc: float | None, status: str) -> None:
        """A device known from before (the dashboard's history) that nothing has been heard from yet: shown with status
        unknown, its last seen time and an `unseen` alert until a message arrives (a broker restarted without
        persistence has lost the retained status that would have brought it back)."""
        if device not in self.devices:
            self.devices[device] = DeviceView(device, last_seen_utc=last_seen_utc, remembered=status,
                                              seq=seq_streams(self.recent_seqs))

    def _expire_emotions(self, d: DeviceView, now: float) -> None:
        # A bucket leaves when the window's start has passed it: the mix covers window_s, and up to one bucket more.
        oldest = int((now - self.window_s) // self.emotion_bucket_s)
        while d.emotions and (d.emotions[0][0] < oldest or len(d.emotions) > EMOTION_BUCKETS + 1):
            d.emotion_counts.subtract(d.emotions.popleft()[1])

    def _malformed(self, device: DeviceView, why: str) -> None:
        self.rejected += 1
        device.malformed += 1
        device.last_malformed = why

    def emotion_mix(self, device: DeviceView | None, now: float) -> dict[str, float]:
        """Share (0-1) of each emotion among the faces that appeared with it or changed to it within the window (to a
        sixtieth of it: EMOTION_BUCKETS);
        of one device, or of the whole fleet when `device` is None. Largest first."""
        counts: Counter[str] = Counter()
        for d in [device] if device else self.devices.values():
            self._expire_emotions(d, now)
            counts.update(d.emotion_counts)  # counted as they came: a dashboard asks for a thousand mixes a second
        counts = +counts  # without the emotions that left the window
        total = sum(counts.values())
        return {e: round(n / total, 3) for e, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))}

    def alerts(self, now: float) -> list[Alert]:
        """What an operator should look at, device by device."""
        out = []
        if not self.devices:
            out.append(Alert("-", "no_devices", f"no device seen under {self.prefix}/+/# (is the topic prefix, "
                                                "EDGED_MQTT__TOPIC_PREFIX, or the broker right?)"))
        for name in sorted(self.devices):
            d = self.devices[name]
            if d.remembered is not None:
                last = (f"last {d.remembered}" if d.remembered in (STATUS_ONLINE, STATUS_OFFLINE)
                        else "it never said online or offline")
                out.append(Alert(name, "unseen", f"nothing heard since the dashboard started (its retained status is "
                                                 f"gone: a broker restarted without persistence, or the kiosk was "
                                                 f"retired while no dashboard ran); {last}"
                                                 f"{_since(d.last_seen_utc, now, ', last seen ')}"))
            if d.status == STATUS_OFFLINE:
                out.append(Alert(name, "offline", "offline" + _since(d.last_seen_utc, now, " last seen ")))
            elif d.health(now, self.stale_s) == "stale":
                out.append(Alert(name, "stale", f"online, but nothing new for {duration(now - d.last_seen_utc)}"))
            if d.status == STATUS_ONLINE and d.stats is not None:
                if not d.stats.camera_ok:
                    out.append(Alert(name, "camera", f"camera lost, being reopened "
                                                     f"({plural(d.stats.camera_reconnects, 'reconnect')} so far)"))
                elif d.stats.fps == 0 and not starting(d.stats):
                    out.append(Alert(name, "no_frames", f"online, but processing no frames (0 fps; "
                                                        f"{plural(d.stats.frames, 'frame')} since start)"))
            events = d.seq["events"]
            if events.lost:
                ranges = ", ".join(f"{a}" if a == b else f"{a}-{b}" for a, b in events.gaps[-3:])
                out.append(Alert(name, "lost", f"{plural(events.lost, 'event')} lost (seq {ranges})"))
            if events.resets:
                out.append(Alert(name, "reset", f"events seq went back {plural(events.resets, 'time')}, now at {events.last}"))
        return out

    def snapshot(self, now: float, *, devices: bool = True) -> dict[str, Any]:
        """Everything as plain JSON-able data, for `edged watch --json` and the dashboard's API (`devices=False`:
        without the per-device part, for a caller that makes its own)."""
        rows = {name: self.device_snapshot(self.devices[name], now) for name in sorted(self.devices)} if devices else {}
        return {
            "prefix": self.prefix,
            "window_s": self.window_s,
            "devices": rows,
            "fleet": self.fleet_summary(now),
            "alerts": [{"device": a.device, "kind": a.kind, "detail": a.detail} for a in self.alerts(now)],
            "rejected": self.rejected,
        }

    def fleet_summary(self, now: float, *, mix: bool = True) -> dict[str, Any]:
        """{"devices", "online", "faces" (in view now: live devices only), "emotion_mix" (unless `mix` is False: it
        walks every device's window)}."""
        devices = self.devices.values()
        summary: dict[str, Any] = {"devices": len(devices), "online": sum(d.status == STATUS_ONLINE for d in devices),
                                   "faces": sum(len(d.faces) for d in devices if d.live)}
        if mix:
            summary["emotion_mix"] = self.emotion_mix(None, now)
        return summary

    def resync(self) -> None:
        """Call when the subscriber's connection to the broker comes back: on every device's topics, the next jump in
        `seq` is what this subscriber missed while away, not loss (docs/mqtt.md, "seq")."""
        for d in self.devices.values():
            for stream in d.seq.values():
                stream.resync()

    def device_snapshot(self, d: DeviceView, now: float) -> dict[str, Any]:
        """One device as plain JSON-able data (times: UTC epoch seconds and seconds)."""
        return {
            "status": d.status,
            "health": d.health(now, self.stale_s),
            "last_seen_utc": d.last_seen_utc,
            "last_seen_ago_s": None if d.last_seen_utc is None else round(now - d.last_seen_utc, 1),
            "fps": d.fps if d.live else None,
            "faces": len(d.faces) if d.live else None,
            "emotions_now": sorted({f.emotion for f in d.faces}) if d.live else [],
            "emotion_mix": self.emotion_mix(d, now),
            "seq": {kind: {"last": s.last, "lost": s.lost, "duplicates": s.duplicates, "resets": s.resets,
                           "late": s.late, "skipped": s.skipped} for kind, s in d.seq.items()},
            "camera_ok": None if d.stats is None or not d.live else d.stats.camera_ok,
            "outbox_depth": None if d.stats is None else d.stats.outbox_depth,
            "malformed": d.malformed,
            "last_malformed": d.last_malformed,
            "remembered": d.remembered,
        }


def starting(stats: Stats) -> bool:
    """Whether `stats` come from a daemon still starting: no frame processed yet, up less than STARTUP_GRACE_S."""
    return stats.frames == 0 and stats.uptime_s < STARTUP_GRACE_S


def duration(seconds: float) -> str:
    """An age or a wait as people read it: seconds under 90 s, minutes under 90 minutes, hours beyond. The one rule
    of `edged watch`, the alerts and the dashboard (whose pages, which count ages live, say them the same way)."""
    seconds = max(0.0, seconds)
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def plural(n: int, noun: str) -> str:
    """`1 event`, `2 events`."""
    return f"{n} {noun if n == 1 else noun + 's'}"


def _since(ts_utc: float | None, now: float, prefix: str) -> str:
    return "" if ts_utc is None else f"{prefix}{duration(now - ts_utc)} ago"
