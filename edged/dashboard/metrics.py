"""Prometheus `/metrics`: the fleet as gauges and counters with the device as a label (prometheus-client).

Built at each scrape from the fleet view (a custom collector), so a device that disappears from the view also
disappears here. Names (docs/dashboard.md lists them with their meaning):

- per device (label `device`): edged_device_up, edged_device_stale, edged_device_last_seen_timestamp_seconds,
  edged_device_fps, edged_device_faces, edged_device_camera_ok, edged_device_outbox_depth,
  edged_device_events_lost, edged_device_events_resets_total, edged_device_events_duplicates_total,
  edged_device_malformed_total, edged_device_alerts (also label `kind`);
- the dashboard: edged_dashboard_broker_connected, edged_dashboard_messages_total,
  edged_dashboard_rejected_total, edged_dashboard_devices, edged_dashboard_live_pages,
  edged_dashboard_history_rows.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from edged.dashboard.service import Dashboard
from edged.payloads import STATUS_ONLINE


class FleetCollector(Collector):
    """Collects `dashboard`'s fleet at scrape time."""

    def __init__(self, dashboard: Dashboard) -> None:
        self.dashboard = dashboard

    def collect(self) -> Iterator[Metric]:
        dashboard, now = self.dashboard, time.time()
        view = dashboard.view

        def gauge(name: str, doc: str) -> GaugeMetricFamily:
            return GaugeMetricFamily(name, doc, labels=["device"])

        up = gauge("edged_device_up", "1 when the device's status is online, else 0")
        stale = gauge("edged_device_stale", "1 when online but nothing newer than EDGED_DASHBOARD__STALE_S")
        seen = gauge("edged_device_last_seen_timestamp_seconds", "UTC epoch seconds of the newest payload ts")
        fps = gauge("edged_device_fps", "Frames processed per second, from the latest stats")
        faces = gauge("edged_device_faces", "Faces in view, from the latest state")
        camera = gauge("edged_device_camera_ok", "1 while the camera delivers frames, from the latest stats")
        outbox = gauge("edged_device_outbox_depth", "Events spooled on the device, not yet acknowledged")
        lost = gauge("edged_device_events_lost", "Events missing from the events seq (gaps not filled late)")
        resets = CounterMetricFamily("edged_device_events_resets", "Times the events seq went back", labels=["device"])
        dups = CounterMetricFamily("edged_device_events_duplicates", "Events delivered twice", labels=["device"])
        bad = CounterMetricFamily("edged_device_malformed", "Payloads that are not the contract", labels=["device"])
        alerts = GaugeMetricFamily("edged_device_alerts", "Current alerts by kind", labels=["device", "kind"])
        with dashboard.feed.lock:
            for name, d in view.devices.items():
                labels = [name]
                up.add_metric(labels, float(d.status == STATUS_ONLINE))
                stale.add_metric(labels, float(d.health(now, view.stale_s) == "stale"))
                if d.last_seen_utc is not None:
                    seen.add_metric(labels, d.last_seen_utc)
                if d.stats is not None:
                    outbox.add_metric(labels, d.stats.outbox_depth)
                if d.live:  # an offline device's fps, faces and camera are its last ones, not now: no sample
                    if d.stats is not None:
                        fps.add_metric(labels, d.stats.fps)
                        camera.add_metric(labels, float(d.stats.camera_ok))
                    faces.add_metric(labels, len(d.faces))
                events = d.seq["events"]
                lost.add_metric(labels, events.lost)
                resets.add_metric(labels, events.resets)
                dups.add_metric(labels, events.duplicates)
                bad.add_metric(labels, d.malformed)
            counts: dict[tuple[str, str], int] = {}
            for alert in view.alerts(now):
                counts[(alert.device, alert.kind)] = counts.get((alert.device, alert.kind), 0) + 1
            for (device, kind), n in sorted(counts.items()):
                alerts.add_metric([device, kind], n)
            devices, rejected, received = len(view.devices), view.rejected, dashboard.feed.received
        yield from (up, stale, seen, fps, faces, camera, outbox, lost, resets, dups, bad, alerts)
        yield GaugeMetricFamily("edged_dashboard_broker_connected", "1 while subscribed to the broker",
                                value=float(dashboard.feed.connected))
        yield CounterMetricFamily("edged_dashboard_messages", "MQTT messages received", value=received)
        yield CounterMetricFamily("edged_dashboard_rejected", "MQTT messages that are not the contract", value=rejected)
        yield GaugeMetricFamily("edged_dashboard_devices", "Devices seen under the prefix", value=devices)
        yield GaugeMetricFamily("edged_dashboard_live_pages", "Pages listening to /api/live", value=dashboard.pages)
        yield GaugeMetricFamily("edged_dashboard_history_rows", "Per-minute rows in the history database",
                                value=dashboard.history.rows())


def exposition(dashboard: Dashboard) -> bytes:
    """The text exposition format (prometheus_client.CONTENT_TYPE_LATEST) of a fresh registry over `dashboard`."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(FleetCollector(dashboard))
    return generate_latest(registry)
