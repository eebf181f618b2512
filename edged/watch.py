"""`edged watch`: the smallest useful dashboard, a live table of devices, faces and events from MQTT.

`FleetView` folds messages into what the table shows and does no I/O, so it can be driven by anything;
`watch` subscribes to `<prefix>/+/#` and redraws the table with rich until stopped.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import SecretStr, ValidationError
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from edged.payloads import STATUS_OFFLINE, STATUS_ONLINE, Event, Face, State, Stats
from edged.publisher import build_client, refusal_message
from edged.settings import MqttSettings

logger = logging.getLogger(__name__)

_MODELS = {"events": Event, "state": State, "stats": Stats}


@dataclass
class DeviceView:
    """What is known about one device."""

    device: str
    status: str = "unknown"
    last_seen_utc: float | None = None  # the newest payload `ts`, so a stale retained message does not look fresh
    fps: float | None = None
    stats: Stats | None = None
    faces: list[Face] = field(default_factory=list)
    last_seq: dict[str, int] = field(default_factory=dict)
    missed: int = 0  # messages lost, from gaps in `seq`


class FleetView:
    """Devices, their faces and recent events, from the messages under one topic prefix."""

    def __init__(self, prefix: str, max_events: int = 15) -> None:
        self.prefix = prefix
        self.devices: dict[str, DeviceView] = {}
        self.events: deque[Event] = deque(maxlen=max_events)
        self.rejected = 0  # messages that are not contract payloads

    def apply(self, topic: str, payload: bytes) -> None:
        """Fold in one message; malformed ones are counted in `rejected`, never raised."""
        parts = topic.split("/")
        if len(parts) != 3 or parts[0] != self.prefix:
            self.rejected += 1
            return
        _, device_id, kind = parts
        device = self.devices.setdefault(device_id, DeviceView(device_id))
        if not payload:
            return  # an empty payload clears a retained message
        if kind == "status":
            status = payload.decode("utf-8", "replace")
            if status in (STATUS_ONLINE, STATUS_OFFLINE):
                device.status = status
            else:
                self.rejected += 1
            return
        model = _MODELS.get(kind)
        if model is None:
            self.rejected += 1
            return
        try:
            message = model.model_validate_json(payload)
        except ValidationError:
            self.rejected += 1
            return
        self._count_gap(device, kind, message.seq)
        device.last_seen_utc = max(device.last_seen_utc or 0.0, _epoch(message.ts))
        if isinstance(message, Event):
            self.events.appendleft(message)
        elif isinstance(message, State):
            device.faces = message.faces
        elif isinstance(message, Stats):
            device.stats, device.fps = message, message.fps

    @staticmethod
    def _count_gap(device: DeviceView, kind: str, seq: int) -> None:
        previous = device.last_seq.get(kind)
        if previous is not None and seq > previous + 1:
            device.missed += seq - previous - 1
        device.last_seq[kind] = seq  # a smaller seq means the device restarted: start counting again


def _epoch(ts: str) -> float:
    return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()


def _age(ts_utc: float | None, now: float) -> str:
    return "-" if ts_utc is None else f"{max(0.0, now - ts_utc):.0f} s ago"


def render(view: FleetView, header: str, now: float | None = None) -> RenderableType:
    """The dashboard: a devices table, a faces table and the latest events."""
    now = time.time() if now is None else now
    devices = Table(title="devices", expand=True)
    for column in ("device", "status", "last seen", "fps", "faces", "dropped frames", "missed msgs"):
        devices.add_column(column)
    faces = Table(title="faces in view", expand=True)
    for column in ("device", "track", "emotion", "confidence", "box"):
        faces.add_column(column)
    for name in sorted(view.devices):
        d = view.devices[name]
        colour = {"online": "green", "offline": "red"}.get(d.status, "yellow")
        devices.add_row(
            name,
            Text(d.status, style=colour),
            _age(d.last_seen_utc, now),
            "-" if d.fps is None else f"{d.fps:.1f}",
            str(len(d.faces)),
            "-" if d.stats is None else str(d.stats.frames_dropped),
            str(d.missed),
        )
        for f in d.faces:
            faces.add_row(name, str(f.track), f.emotion, f"{f.confidence:.2f}", " ".join(map(str, f.box)))
    events = Table(title="recent events", expand=True)
    for column in ("time", "device", "event", "track", "emotion"):
        events.add_column(column)
    for e in view.events:
        emotion = f"{e.previous_emotion} -> {e.emotion}" if e.previous_emotion else e.emotion
        if e.dwell_s is not None:
            emotion += f" (after {e.dwell_s:.1f} s)"
        events.add_row(e.ts[11:19], e.device, e.type, str(e.track), emotion)
    footer = Text(f"{view.rejected} messages rejected" if view.rejected else "", style="dim")
    return Group(Text(header, style="bold"), devices, faces, events, footer)


def watch(
    mqtt: MqttSettings,
    password: SecretStr | None,
    prefix: str,
    stop: threading.Event | None = None,
    *,
    view: FleetView | None = None,
    console: Console | None = None,
    refresh_s: float = 0.5,
) -> None:
    """Show the fleet under `prefix` until `stop` is set or Ctrl-C; `view` lets a caller see the data."""
    view = view or FleetView(prefix)
    stop = stop or threading.Event()
    lock = threading.Lock()  # paho's thread applies messages while this one renders
    subscription = f"{prefix}/+/#"
    link = {"state": f"connecting to {mqtt.host}:{mqtt.port}"}

    # A random client id: several watchers may run at once, and none of them must take a device's id.
    client = build_client(mqtt, f"edged-watch-{uuid.uuid4().hex[:8]}", password)

    def on_connect(client: Any, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        if reason.is_failure:
            link["state"] = refusal_message(mqtt, reason)
            return
        client.subscribe(subscription, qos=1)
        link["state"] = f"{mqtt.host}:{mqtt.port} {subscription}"

    def on_disconnect(client: Any, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        if not stop.is_set():
            link["state"] = f"disconnected from {mqtt.host}:{mqtt.port} ({reason}); reconnecting"

    def on_message(client: Any, userdata: Any, message: Any) -> None:
        with lock:
            view.apply(message.topic, message.payload)

    client.on_connect, client.on_disconnect, client.on_message = on_connect, on_disconnect, on_message
    client.connect_async(mqtt.host, mqtt.port, keepalive=mqtt.keepalive)
    client.loop_start()
    try:
        with Live(console=console, refresh_per_second=4) as live:

            def draw() -> None:
                with lock:
                    live.update(render(view, link["state"]))

            draw()
            while not stop.wait(refresh_s):
                draw()
            draw()  # the last frame stays on screen, so it must be current
    except KeyboardInterrupt:
        pass
    finally:
        stop.set()
        with contextlib.suppress(Exception):  # closing a dead connection must not hide the first error
            client.disconnect()
        client.loop_stop()
