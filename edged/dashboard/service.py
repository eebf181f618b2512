"""What the dashboard knows: the fleet (edged.fleet's model, fed by edged.watch's MQTT feed), its history, and the
live updates waiting for the pages.

The web layer (edged.dashboard.app) only renders what this returns. Every method that reads the fleet holds the
feed's lock, the one the MQTT thread holds while it folds a message in.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Iterator
from typing import Any

from pydantic import SecretStr

from edged.dashboard.history import History
from edged.fleet import Alert, FleetView
from edged.payloads import Event, State, Stats
from edged.settings import DashboardSettings, MqttSettings
from edged.watch import Feed

CLIENT_QUEUE = 8  # updates waiting for one page; a page that falls further behind gets a full picture instead
FULL_EVERY_S = 5.0  # a full picture now and then: `stale` and "last seen" change without any message
# Duplicates are told from resets over the last 512 seqs of each device and topic (a QoS 1 redelivery comes within
# the publisher's in-flight window, 20 by default): 12 kB per kiosk (edged.fleet.SeqStream).
RECENT_SEQS = 512


class Dashboard:
    """The fleet view, the MQTT feed that fills it, the history it records, and the pages listening for updates."""

    def __init__(self, settings: DashboardSettings, mqtt: MqttSettings, password: SecretStr | None,
                 history: History) -> None:
        self.settings, self.history = settings, history
        self.view = FleetView(mqtt.topic_prefix, window_s=settings.window_s, stale_s=settings.stale_s,
                              recent_seqs=RECENT_SEQS)
        for device, last_seen_utc, status in history.devices():  # the ones the broker may have forgotten
            self.view.remember(device, last_seen_utc, status)
        self.feed = Feed(mqtt, password, self.view, client_prefix="edged-dashboard", listener=self._on_message,
                         log_link=True)
        self.started = time.time()
        self._dirty: set[str] = set()
        self._sent: dict[str, dict[str, Any]] = {}  # the row of each device as the pages have it (one per device)
        self._sent_alerts: list[dict[str, str]] | None = None
        self._pages: set[asyncio.Queue[str | None]] = set()
        self._last_full = 0.0

    def _on_message(self, topic: str, folded: Event | State | Stats | None, now: float, retained: bool) -> None:
        # Called by the feed under its lock, in paho's thread.
        parts = topic.split("/")
        if len(parts) == 3 and parts[2] == "status" and parts[1] not in self.view.devices:
            self.history.forget(parts[1])  # its status was cleared: retired (docs/fleet.md), not to be remembered
        elif len(parts) >= 3 and parts[1] in self.view.devices:
            self._dirty.add(parts[1])
            d = self.view.devices[parts[1]]
            self.history.heard(parts[1], now, d.last_seen_utc, d.status)
        # A retained state or stats is the broker's copy of an old sample, sent again on every (re)subscription
        # (a dashboard restart): it updates the view, but the history counted it when it was new.
        if folded is not None and not retained:
            self.history.record(folded, now)

    @contextlib.contextmanager
    def running(self) -> Iterator[Dashboard]:
        """Connected to the broker (retrying in the background) while in the block; the history flushed after."""
        try:
            with self.feed.running():
                yield self
        finally:
            self.history.close(time.time())

    def broker(self) -> dict[str, Any]:
        """{"connected": whether the subscription is up, "detail": the link in words}."""
        return {"connected": self.feed.connected, "detail": self.feed.link}

    def _rows(self, names: list[str], now: float, alerts: list[Alert]) -> dict[str, dict[str, Any]]:
        by_device: dict[str, list[dict[str, str]]] = {}
        for alert in alerts:
            by_device.setdefault(alert.device, []).append({"kind": alert.kind, "detail": alert.detail})
        rows = {}
        for name in names:
            row = self.view.device_snapshot(self.view.devices[name], now)
            row["alerts"] = by_device.get(name, [])
            rows[name] = row
        return rows

    def overview(self, now: float) -> dict[str, Any]:
        """The whole fleet: {"now", "prefix", "broker", "fleet", "devices": {id: row}, "alerts": [...], "rejected"};
        a row is FleetView.device_snapshot plus its alerts. Times in UTC epoch seconds."""
        with self.feed.lock:
            snapshot = self.view.snapshot(now, devices=False)
            snapshot["devices"] = self._rows(sorted(self.view.devices), now, self.view.alerts(now))
        return {"now": now, "broker": self.broker(), "full": True, **snapshot}

    def devices_in(self, group: str) -> list[str]:
        """The ids of the kiosks the dashboard knows (heard from since it started, or remembered in its history) that
        start with `group` ("" = all), sorted."""
        with self.feed.lock:
            return sorted(name for name in self.view.devices if name.startswith(group))

    def knows(self, name: str) -> bool:
        """Whether `name` was heard from since the dashboard started, or is remembered in its history."""
        with self.feed.lock:
            return name in self.view.devices

    def device(self, name: str, now: float) -> dict[str, Any] | None:
        """One device's row, its current faces and latest events (newest first); None when never seen."""
        with self.feed.lock:
            if name not in self.view.devices:
                return None
            d = self.view.devices[name]
            row = self._rows([name], now, self.view.alerts(now))[name]
            faces = [f.model_dump() for f in d.faces]
            events = [e.model_dump(exclude_none=True) for e in d.recent]
            stats = None if d.stats is None else d.stats.model_dump()
        return {"now": now, "device": name, "broker": self.broker(), "row": row, "faces": faces, "events": events,
                "stats": stats}

    def update(self, now: float) -> dict[str, Any]:
        """What changed since the last update: {"now", "broker", "fleet", "full", "devices": {id: row}, "alerts",
        "rejected"} (malformed messages so far, the whole fleet).

        Usually (`full` false) only the devices that changed, each with only the fields of its row that changed, and
        "alerts" only when the list changed: with a thousand kiosks sending every second, most of a row (fps, mix,
        seq counters, camera) stays as it was, and the page keeps what it has. Every FULL_EVERY_S seconds, and
        after a page fell behind, every device's whole row and the alerts (`full` true)."""
        full = now - self._last_full >= FULL_EVERY_S
        with self.feed.lock:
            names = list(self.view.devices) if full else [n for n in self._dirty if n in self.view.devices]
            self._dirty.clear()
            found = self.view.alerts(now)
            rows = self._rows(names, now, found)
            fleet = self.view.fleet_summary(now, mix=full)
        alerts = [{"device": a.device, "kind": a.kind, "detail": a.detail} for a in found]
        update: dict[str, Any] = {"now": now, "broker": self.broker(), "fleet": fleet, "full": full}
        if full:
            self._last_full = now
            self._sent = rows
            update["devices"] = dict(sorted(rows.items()))
        else:
            changed = {}
            for name in sorted(rows):
                row, sent = rows[name], self._sent.get(name)
                if sent is None:
                    self._sent[name] = changed[name] = row
                    continue
                delta = _delta(sent, row)
                if delta:
                    changed[name] = delta
            update["devices"] = changed
        update["rejected"] = self.view.rejected
        if full or alerts != self._sent_alerts:
            self._sent_alerts = update["alerts"] = alerts
        return update

    def encoded_update(self, now: float) -> str:
        """update() as the JSON text the pages get (encoding a thousand rows takes a while: callers run it in a
        worker thread, off the event loop)."""
        return json.dumps(self.update(now), separators=(",", ":"))

    def listen(self) -> asyncio.Queue[str | None]:
        """A queue of JSON updates for one page; the first is the whole fleet. None in it means: close."""
        queue: asyncio.Queue[str | None] = asyncio.Queue(CLIENT_QUEUE + 1)
        queue.put_nowait(json.dumps(self.overview(time.time())))
        self._pages.add(queue)
        return queue

    def forget(self, queue: asyncio.Queue[str | None]) -> None:
        self._pages.discard(queue)

    @property
    def pages(self) -> int:
        """Pages listening for updates now."""
        return len(self._pages)

    async def push(self, stop: asyncio.Event) -> None:
        """Until `stop`: every push_interval_s, the changes to every listening page; history to disk every 5 s."""
        last_flush = time.monotonic()
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.settings.push_interval_s)
            if self._pages:
                data = await asyncio.to_thread(self.encoded_update, time.time())
                for queue in list(self._pages):
                    if queue.qsize() >= CLIENT_QUEUE:  # a slow page: its next update must be a full picture
                        self._last_full = 0.0
                        continue
                    queue.put_nowait(data)
            if time.monotonic() - last_flush >= 5.0:
                last_flush = time.monotonic()
                await asyncio.to_thread(self.history.flush, time.time())
        for queue in list(self._pages):
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait(None)


def _delta(sent: dict[str, Any], row: dict[str, Any]) -> dict[str, Any]:
    """The fields of `row` that differ from `sent`, which is brought up to date; of `seq`, only the topics whose
    counters moved (the page lays them over what it has)."""
    delta = {}
    for key, value in row.items():
        old = sent.get(key)
        if old == value:
            continue
        sent[key] = value
        if key == "seq" and isinstance(old, dict):
            value = {kind: counts for kind, counts in value.items() if old.get(kind) != counts}
        delta[key] = value
    return delta
