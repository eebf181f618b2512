"""`edged watch`: a fleet view of every device under one topic prefix, live in the terminal or as JSON.

The model (`edged.fleet.FleetView`) does no I/O; here a paho client feeds it from `<prefix>/+/#`, and rich draws
it: a devices table (status, last seen, fps, faces, emotion mix over the window, seq health), the alerts (offline,
stale, lost events, seq resets) and the latest events. `--once` prints one picture after the retained messages
have arrived and exits 1 when there are alerts, for scripts and monitoring.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

from pydantic import SecretStr
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from edged.brokerlink import connect_failure_message, no_connack_message, where
from edged.errors import BrokerError
from edged.fleet import FleetView, duration, plural
from edged.payloads import Event, State, Stats
from edged.publisher import build_client, refusal_message
from edged.settings import MqttSettings

logger = logging.getLogger(__name__)


Listener = Callable[[str, "Event | State | Stats | None", float, bool], None]


class Feed:
    """A paho client that folds every message under `<prefix>/+/#` into `view`, holding `lock` while it does.

    `listener(topic, folded payload or None, received at, retained)` is called after each message, under the lock (the
    dashboard keeps its history and its list of changed devices with it). `connected` is whether the
    subscription is up; `received` counts messages. `log_link`: log each change of the link once, with its reason
    (subscribed, lost, refused or unreachable, back), never once per retry (the dashboard; `edged watch` shows the
    link in its header instead).
    """

    def __init__(self, mqtt: MqttSettings, password: SecretStr | None, view: FleetView, *,
                 client_prefix: str = "edged-watch", listener: Listener | None = None, log_link: bool = False) -> None:
        self.view, self.lock = view, threading.Lock()
        self.listener = listener
        self.log_link = log_link
        self._said: str | None = None  # the link change logged last
        self._down_since: float | None = None  # when the subscription was lost (monotonic)
        self._ever_up = False
        self.connected = False
        self.received = 0
        self.subscription = f"{view.prefix}/+/#"
        self.link = f"connecting to {mqtt.host}:{mqtt.port}"
        self.subscribed = threading.Event()
        self.refused: str | None = None  # why the broker refused us, or that it cannot be reached
        self._mqtt = mqtt
        # A random client id: several watchers may run at once, and none of them must take a device's id.
        self.client = build_client(mqtt, f"{client_prefix}-{uuid.uuid4().hex[:8]}", password)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_disconnect = self._on_disconnect
        self.client.on_connect_fail = self._on_connect_fail
        self.client.on_message = self._on_message
        self._stopping = False
        self.failed: str | None = None  # the first message the view could not fold in

    def _say(self, level: int, message: str) -> None:
        """Log `message` when it differs from the last one: paho retries every few seconds, a log line is for a change."""
        if self.log_link and message != self._said:
            logger.log(level, "%s", message)
        self._said = message

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        if reason.is_failure:
            self.link = self.refused = refusal_message(self._mqtt, reason)
            self._say(logging.ERROR, f"{self.refused}; retrying")
            return
        client.subscribe(self.subscription, qos=1)
        self.refused = None
        self.link = f"{where(self._mqtt)} {self.subscription}"
        self.connected = True
        if self._ever_up:
            with self.lock:  # what the devices published while we were away never reached us: not their loss
                self.view.resync()
            down = "" if self._down_since is None else f" after {time.monotonic() - self._down_since:.0f} s"
            self._say(logging.INFO, f"MQTT connection to {where(self._mqtt)} is back{down}; subscribed to "
                                    f"{self.subscription} again")
        else:
            self._say(logging.INFO, f"connected to MQTT broker {where(self._mqtt)}; subscribed to {self.subscription}")
        self._ever_up, self._down_since = True, None

    def _on_subscribe(self, client: Any, userdata: Any, mid: int, reasons: list[Any], properties: Any) -> None:
        # A broker whose ACL does not let this user read the topics refuses in the SUBACK, not in the CONNACK.
        refused = [r for r in reasons if r.is_failure]
        if refused:
            self.link = self.refused = (f"MQTT broker {where(self._mqtt)} refused the subscription to "
                                        f"{self.subscription}: {refused[0]}; check the broker's ACL for this user")
            self.connected = False
            self._say(logging.ERROR, self.refused)
        self.subscribed.set()

    def _on_connect_fail(self, client: Any, userdata: Any) -> None:
        # paho calls this inside its `except OSError:`: the exception tells a TLS failure from an unreachable host.
        self.refused = connect_failure_message(self._mqtt, sys.exc_info()[1])
        self.link = f"{self.refused}; retrying"
        self.connected = False
        self._say(logging.ERROR if "TLS" in self.refused else logging.WARNING, self.link)

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        was_up, self.connected = self.connected, False
        if self._stopping:
            return
        if self.refused:  # the broker's refusal says more than the disconnect that follows it
            self.link = f"{self.refused}; retrying"
        elif was_up:
            self.link = f"lost the MQTT connection to {where(self._mqtt)} ({reason}); reconnecting"
            self._down_since = time.monotonic()
            self._say(logging.WARNING, self.link)
        else:  # a TCP connection that got no CONNACK: not an MQTT listener of the configured kind
            self.refused = no_connack_message(self._mqtt, "keep alive" in str(reason).lower())
            self.link = f"{self.refused}; retrying"
            self._say(logging.ERROR, self.link)

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        # paho's thread dies on an exception from here, and the view would silently stop updating: whatever a
        # message holds, it is counted (FleetView.apply never raises for a payload; this is the last guard).
        self.fold(message.topic, message.payload, time.time(), bool(message.retain))

    def fold(self, topic: str, payload: bytes, now: float, retained: bool = False) -> None:
        """Fold in one message received at `now` (UTC epoch seconds), and tell the listener: what paho's thread does
        with each message (tests call it with a clock of their own). Never raises."""
        with self.lock:
            self.received += 1
            try:
                folded = self.view.apply(topic, payload, now)
                if self.listener is not None:
                    # retained: the broker's stored copy, sent because we (re)subscribed, not a new sample
                    self.listener(topic, folded, now, retained)
            except Exception as exc:
                self.view.rejected += 1
                if not self.failed:
                    logger.exception("a message on %s could not be folded in", topic)
                self.failed = f"{type(exc).__name__} on {topic}"

    @contextlib.contextmanager
    def running(self) -> Iterator[Feed]:
        self.client.connect_async(self._mqtt.host, self._mqtt.port, keepalive=self._mqtt.keepalive)
        self.client.loop_start()
        try:
            yield self
        finally:
            self._stopping = True
            with contextlib.suppress(Exception):  # closing a dead connection must not hide the first error
                self.client.disconnect()
            self.client.loop_stop()


def _age(ts_utc: float | None, now: float) -> str:
    return "-" if ts_utc is None else f"{duration(now - ts_utc)} ago"


def _mix(mix: dict[str, float], top: int = 3) -> str:
    return " ".join(f"{emotion} {share:.0%}" for emotion, share in list(mix.items())[:top]) or "-"


def render(view: FleetView, header: str, now: float | None = None) -> RenderableType:
    """The dashboard: the fleet in one line, a devices table, the alerts and the latest events."""
    now = time.time() if now is None else now
    devices = Table(title="devices", expand=True)
    for column in ("device", "status", "seen", "fps", "faces", "now", f"mix ({view.window_s:.0f} s)", "lost", "dup",
                   "resets", "bad"):
        devices.add_column(column, no_wrap=column in ("device", "status", "seen", "fps"))
    for name in sorted(view.devices):
        d = view.devices[name]
        events = d.seq["events"]
        colour = {"online": "green", "offline": "red"}.get(d.status, "yellow")
        devices.add_row(
            name,
            Text(d.status, style=colour),
            _age(d.last_seen_utc, now),
            "-" if d.fps is None or not d.live else f"{d.fps:.1f}",
            str(len(d.faces)) if d.live else "-",
            (" ".join(sorted({f.emotion for f in d.faces})) or "-") if d.live else "-",
            _mix(view.emotion_mix(d, now)),
            Text(str(events.lost), style="red" if events.lost else ""),
            str(events.duplicates),
            str(events.resets),
            Text(str(d.malformed), style="red" if d.malformed else ""),
        )
    alerts = Table(title="alerts", expand=True)
    for column in ("device", "alert", "detail"):
        alerts.add_column(column)
    found = view.alerts(now)
    for alert in found:
        alerts.add_row(alert.device, Text(alert.kind, style="red"), alert.detail)
    events_table = Table(title="recent events", expand=True)
    for column in ("time", "device", "event", "track", "emotion"):
        events_table.add_column(column)
    for e in view.events:
        emotion = f"{e.previous_emotion} -> {e.emotion}" if e.previous_emotion else e.emotion
        if e.dwell_s is not None:
            emotion += f" (after {e.dwell_s:.1f} s)"
        events_table.add_row(e.ts[11:19], e.device, e.type, str(e.track), emotion)
    summary = view.fleet_summary(now, mix=False)
    fleet = Text(f"{plural(summary['devices'], 'device')}, {summary['online']} online, "
                 f"{plural(summary['faces'], 'face')} in view; "
                 f"fleet emotion mix: {_mix(view.emotion_mix(None, now), top=7)}")
    footer = Text(f"{view.rejected} malformed messages (not the contract; counted, never fatal)"
                  if view.rejected else "", style="dim")
    no_alerts = Text("no alerts: every device online, fresh, and with an unbroken events seq", style="green")
    return Group(Text(header, style="bold"), fleet, devices, alerts if found else no_alerts, events_table, footer)


def watch(
    mqtt: MqttSettings,
    password: SecretStr | None,
    view: FleetView,
    stop: threading.Event | None = None,
    *,
    console: Console | None = None,
    refresh_s: float = 0.5,
    as_json: bool = False,
) -> None:
    """Show the fleet until `stop` is set or Ctrl-C: a live table, or one JSON snapshot per `refresh_s`."""
    stop = stop or threading.Event()
    console = console or Console()
    feed = Feed(mqtt, password, view)
    try:
        with feed.running():
            if as_json:
                while not stop.wait(refresh_s):
                    with feed.lock:
                        console.print_json(json.dumps(view.snapshot(time.time())), indent=None)
                return
            with Live(console=console, refresh_per_second=4) as live:

                def draw() -> None:
                    with feed.lock:
                        live.update(render(view, feed.link))

                draw()
                while not stop.wait(refresh_s):
                    draw()
                draw()  # the last frame stays on screen, so it must be current
    except KeyboardInterrupt:
        pass
    finally:
        stop.set()


def watch_once(mqtt: MqttSettings, password: SecretStr | None, view: FleetView, wait_s: float,
               connect_timeout_s: float = 10.0) -> None:
    """Subscribe, collect for `wait_s` seconds (the retained status, state and stats arrive at once), return.
    Raises BrokerError at the first refused or failed connection attempt, or after `connect_timeout_s`."""
    feed = Feed(mqtt, password, view)
    with feed.running():
        deadline = time.monotonic() + connect_timeout_s
        while not feed.subscribed.wait(0.05):
            if feed.refused or time.monotonic() > deadline:
                raise BrokerError(feed.refused or f"cannot reach MQTT broker {mqtt.host}:{mqtt.port}")
        if feed.refused:
            raise BrokerError(feed.refused)
        threading.Event().wait(wait_s)
