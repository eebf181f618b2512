"""Publishing to MQTT: the `Publisher` role and its paho-mqtt 2 backend (contract: docs/mqtt.md).

Topics under `<prefix>/<device>/`: `status` (online/offline, retained, also the Last Will), `events` (QoS 1),
`state` and `stats` (retained). paho's network thread does all I/O and reconnects with backoff by itself.

Events go through the outbox (`edged.outbox`): the caller's thread writes them to disk and returns; a drain
thread hands paho at most `inflight` of them at a time, in spool order, and deletes each on its PUBACK. So a
backlog of 100k events after an outage never sits in paho's memory, and neither the pipeline nor the live
state and stats wait behind it. On every connect paho's own copies of unacknowledged messages are dropped and
the drain hands the spool out again, oldest first, each checked against the broker's packet size
(`edged.brokerlink`), so a message the broker cannot take is rejected instead of resent on every reconnect. What
was not acknowledged before the process ended is still in the spool, and sent again at the next start.
"""

from __future__ import annotations

import json
import logging
import math
import ssl
import sys
import threading
import time
from pathlib import Path
from typing import Any, Protocol

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode
from pydantic import SecretStr

from edged.brokerlink import (
    LinkMonitor,
    Refusal,
    connect_failure_message,
    message_sizes,
    no_connack_message,
    publish_size,
    refusal_message,
    takeover_message,
    where,
)
from edged.discovery import HomeAssistantDiscovery
from edged.errors import BrokerError, ConfigError
from edged.faces import Track, TrackEvent
from edged.outbox import Outbox
from edged.payloads import STATUS_OFFLINE, STATUS_ONLINE, TOPICS, Event, Face, State, Stats, utc_iso
from edged.settings import MqttSettings, env_name

logger = logging.getLogger(__name__)

THERMAL_PATH = Path("/sys/class/thermal/thermal_zone0/temp")
# close(): `offline` gets at least this long to be acknowledged, the drain thread this long to stop (seconds);
# systemd/edged.service's TimeoutStopSec counts on both (tests/test_systemd.py).
OFFLINE_WAIT_MIN_S = 0.5
DRAIN_JOIN_S = 5.0
__all__ = ["MqttPublisher", "Publisher", "build_client", "client_id_for", "refusal_message", "tls_context", "topic"]


class Publisher(Protocol):
    """Where the pipeline sends what it sees."""

    def start(self) -> None: ...
    def event(self, event: TrackEvent) -> None: ...
    def state(self, tracks: list[Track], ts_utc: float) -> None: ...
    def stats(self, stats: dict[str, Any]) -> None: ...
    def close(self, timeout: float = 5.0) -> None: ...

    @property
    def connected(self) -> bool: ...

    @property
    def backlog(self) -> int: ...


def topic(prefix: str, device_id: str, name: str) -> str:
    """`<prefix>/<device>/<name>`, name one of status, events, state, stats."""
    return f"{prefix}/{device_id}/{name}"


def client_id_for(mqtt: MqttSettings, device_id: str) -> str:
    """The configured client id, else `edged-<device>`: unique per device, since a duplicate makes status flap."""
    return mqtt.client_id or f"edged-{device_id}"


def build_client(mqtt: MqttSettings, client_id: str, password: SecretStr | None) -> paho.Client:
    """A paho client set up from the settings (protocol, credentials, TLS, backoff), not yet connected."""
    protocol = paho.MQTTv5 if mqtt.protocol == "5" else paho.MQTTv311
    try:
        client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=protocol)
        if mqtt.username is not None:
            client.username_pw_set(mqtt.username, password.get_secret_value() if password else None)
        if mqtt.tls:
            client.tls_set_context(tls_context(mqtt))
            client.tls_insecure_set(mqtt.tls_insecure)
        client.reconnect_delay_set(mqtt.reconnect_min_s, mqtt.reconnect_max_s)  # type: ignore[arg-type]  # floats work
    except (ssl.SSLError, OSError, ValueError) as exc:
        raise BrokerError(f"cannot set up the MQTT client for {mqtt.host}:{mqtt.port}: {exc}") from exc
    return client


def tls_context(mqtt: MqttSettings) -> ssl.SSLContext:
    """The TLS context paho connects with: the CA bundle (else the system store), the client certificate if any.

    ConfigError naming the variable when a file is not usable PEM: retrying cannot fix a file (exit 78), and
    the SSL error alone names neither the file nor the variable.
    """
    try:
        context = ssl.create_default_context(cafile=str(mqtt.ca_file) if mqtt.ca_file else None)
    except (ssl.SSLError, OSError) as exc:
        raise ConfigError(f"{env_name('mqtt', 'ca_file')}={mqtt.ca_file}: not a usable CA bundle (PEM): {exc}") from None
    if mqtt.cert_file is not None:
        try:
            context.load_cert_chain(str(mqtt.cert_file), str(mqtt.key_file) if mqtt.key_file else None)
        except (ssl.SSLError, OSError) as exc:
            raise ConfigError(f"{env_name('mqtt', 'cert_file')}={mqtt.cert_file} and {env_name('mqtt', 'key_file')}="
                              f"{mqtt.key_file}: not a usable certificate and private key (PEM): {exc}") from None
    return context


def read_cpu_temp(path: Path = THERMAL_PATH) -> float | None:
    """CPU temperature in °C from a sysfs thermal zone (millidegrees), None where there is none."""
    try:
        return round(int(path.read_text().strip()) / 1000, 1)
    except (OSError, ValueError):
        return None


class MqttPublisher:
    """Publishes events (through the outbox), state, stats and status for one device; thread-safe.

    outbox: the spool; None uses an in-memory one (nothing survives a restart: for `edged check` and tests).
    inflight: most spooled events handed to paho and not yet acknowledged.
    """

    def __init__(
        self,
        mqtt: MqttSettings,
        device_id: str,
        password: SecretStr | None,
        model_id: str,
        version: str,
        *,
        outbox: Outbox | None = None,
        inflight: int = 20,
        thermal_path: Path = THERMAL_PATH,
        discovery: HomeAssistantDiscovery | None = None,
    ) -> None:
        self._mqtt = mqtt
        self._device = device_id
        self._model_id = model_id
        self._version = version
        self._thermal_path = thermal_path
        self._discovery = discovery  # Home Assistant discovery (edged/discovery.py), None when off
        self.client_id = client_id_for(mqtt, device_id)
        self.topics = {name: topic(mqtt.topic_prefix, device_id, name) for name in TOPICS}
        self.outbox = outbox or Outbox.in_memory()

        # Held while a seq is taken and its state or stats message handed to paho, so seq order is wire order.
        self._lock = threading.Lock()
        self._tracks: list[Track] = []  # the latest faces the pipeline reported, republished on reconnect
        self._faces_ts = time.time()
        self._faces_key: frozenset[tuple[int, str]] | None = None  # what the last published state showed
        self._state_sent_mono = -math.inf
        self._state_pending = False

        # The drain: spooled events handed to paho (mid -> outbox id), woken by new events and acks. Acks arrive
        # as mids from on_publish; only the drain thread matches them to `_inflight`, after it recorded what it
        # published, so an ack that beats the recording is not missed (and acks of status or discovery are ignored).
        self._window = inflight
        self._drain_wake = threading.Condition()
        self._kicked = True
        self._inflight: dict[int, int] = {}
        self._acked_mids: list[int] = []
        self._drain_stop = threading.Event()
        self._drain_thread = threading.Thread(target=self._drain, name="edged-outbox", daemon=True)

        self._connected = threading.Event()
        self._ever_connected = False
        self._started = False
        self._closing = False
        self._last_error: str | None = None
        self._rejected = 0
        # The broker's limits and the pattern of drops (edged/brokerlink.py). On every connect paho's own copies of
        # unacknowledged messages are dropped and the drain hands the spool out again (`_rewind`), so what is sent
        # after a reconnect is decided here, by size, and never resent blindly by paho.
        # A limit learned from this broker's drops before (a restart must not learn it again, one drop at a time).
        self._broker = where(mqtt)
        self.link = LinkMonitor(mqtt.reconnect_min_s, mqtt.reconnect_max_s,
                                refused=self.outbox.refused_size(self._broker))
        # What to recommend when the broker refuses a size: edged's largest message, not the one that was refused.
        self._largest = max(message_sizes(mqtt, device_id, discovery).items(), key=lambda kv: kv[1])
        self._mqtt5 = mqtt.protocol == "5"
        self._rewind = False
        self._too_large = 0  # messages not sent because larger than the broker accepts
        self._too_large_said: set[str] = set()
        self._takeover_said = False
        self._answered = False  # a CONNACK (accepting or refusing) arrived on the current TCP connection
        self._pending_stats: dict[str, Any] | None = None  # the latest figures, sent at once on (re)connect

        self._client = build_client(mqtt, self.client_id, password)
        self._client.max_inflight_messages_set(inflight)
        self._client.max_queued_messages_set(0)  # unbounded in paho, bounded by the drain's window
        self._client.will_set(self.topics["status"], STATUS_OFFLINE, qos=1, retain=True)
        self._client.on_connect = self._on_connect
        self._client.on_connect_fail = self._on_connect_fail
        self._client.on_disconnect = self._on_disconnect
        self._client.on_publish = self._on_publish
        self._client.on_message = self._on_message
        self._client.on_unsubscribe = self._on_unsubscribe

    @property
    def connected(self) -> bool:
        """True between an accepted CONNACK and the next disconnect."""
        return self._connected.is_set()

    @property
    def last_error(self) -> str | None:
        """Why the last connection attempt failed (refused CONNACK, unreachable, TLS), None once connected."""
        return self._last_error

    @property
    def backlog(self) -> int:
        """Events in the spool, not yet acknowledged by the broker."""
        return self.outbox.depth

    def wait_connected(self, timeout: float) -> bool:
        """Wait up to `timeout` seconds for an accepted connection; for `edged check` and tests."""
        return self._connected.wait(timeout)

    def start(self) -> None:
        """Connect in the background; paho retries with backoff (reconnect_min_s..reconnect_max_s)."""
        if self._started:
            return
        self._started = True
        try:
            self._client.connect_async(self._mqtt.host, self._mqtt.port, keepalive=self._mqtt.keepalive)
            self._client.loop_start()
        except (OSError, ValueError) as exc:
            raise BrokerError(f"cannot start the MQTT client for {self._mqtt.host}:{self._mqtt.port}: {exc}") from exc
        self._drain_thread.start()

    def event(self, event: TrackEvent) -> None:
        """Spool one track event (QoS 1) and wake the drain; never waits for the broker."""
        self.outbox.append("events", lambda seq: Event.from_track_event(event, self._device, seq).to_json(),
                           self.topics["events"])
        self._kick()

    def state(self, tracks: list[Track], ts_utc: float) -> None:
        """Report the faces in view now; published at most every state_interval_s, at once when they change."""
        # `tracks` are the tracker's snapshots; the pydantic faces are built only when a state is sent.
        with self._lock:
            self._tracks, self._faces_ts = tracks, ts_utc
            changed = self._faces_key != _key(tracks)
            due = time.monotonic() - self._state_sent_mono >= self._mqtt.state_interval_s
            self._state_pending = True
            if self.connected and (changed or due):
                self._send_state()

    def stats(self, stats: dict[str, Any]) -> None:
        """Publish the pipeline's figures (fps, latency_ms, frames, ...) with version, model id, CPU temperature
        and the outbox's and the link's figures; retained. While disconnected the latest are kept and sent at
        once on connecting (so a dashboard has figures right away, not one stats interval later)."""
        with self._lock:
            self._pending_stats = stats
            if self.connected:
                self._send_stats()

    def _send_stats(self) -> None:
        if self._pending_stats is None:
            return
        payload = Stats(
            device=self._device,
            ts=utc_iso(time.time()),
            seq=self.outbox.next_seq("stats"),
            version=self._version,
            model_id=self._model_id,
            cpu_temp_c=read_cpu_temp(self._thermal_path),
            **self._pending_stats,
            **self.outbox_stats(),
            **self.link_stats(),
        ).to_json()
        self._publish("stats", payload, qos=0, retain=True)

    def link_stats(self) -> dict[str, int]:
        """The broker link's figures for the stats topic."""
        return {"mqtt_disconnects": self.link.disconnects, "mqtt_takeovers": self.link.takeovers,
                "mqtt_too_large": self._too_large}

    def outbox_stats(self) -> dict[str, int]:
        """The spool's figures for the stats topic."""
        box = self.outbox
        return {"outbox_depth": box.depth, "outbox_dropped_full": box.dropped_full,
                "outbox_dropped_expired": box.dropped_expired, "outbox_write_errors": box.write_errors,
                "outbox_rejected": self._rejected}

    def close(self, timeout: float = 5.0) -> None:
        """Flush pending state, give the broker up to `timeout` s to acknowledge the spooled events, publish
        `offline` last, and disconnect. What is not acknowledged by then stays in the spool for the next start."""
        if not self._started or self._closing:
            self._close_outbox()
            return
        self._closing = True
        deadline = time.monotonic() + timeout
        try:
            if self.connected:
                with self._lock:
                    if self._state_pending:
                        self._send_state()
                self._kick()
                with self._drain_wake:
                    self._drain_wake.wait_for(lambda: self.outbox.depth == 0 or not self.connected,
                                              max(0.0, deadline - time.monotonic()))
                with self._lock:
                    info = self._publish("status", STATUS_OFFLINE, qos=1, retain=True)
                try:
                    if info is not None:
                        info.wait_for_publish(max(OFFLINE_WAIT_MIN_S, deadline - time.monotonic()))
                except (RuntimeError, ValueError) as exc:
                    logger.debug("offline status not acknowledged: %s", exc)
            if self.outbox.depth:
                logger.warning("%d events not acknowledged by the broker: kept in %s for the next start",
                               self.outbox.depth, self.outbox.path)
            self._client.disconnect()
        finally:
            self._drain_stop.set()
            self._kick()
            if self._drain_thread.is_alive():
                self._drain_thread.join(DRAIN_JOIN_S)
            self._client.loop_stop()
            self._connected.clear()
            self._close_outbox()

    def _close_outbox(self) -> None:
        try:
            self.outbox.close()
        except Exception:
            logger.exception("closing the outbox failed")

    # -- the drain thread --

    def _kick(self) -> None:
        with self._drain_wake:
            self._kicked = True
            self._drain_wake.notify_all()

    def _drain(self) -> None:
        """Hand spooled events to paho, at most `inflight` unacknowledged at once; delete them when acknowledged."""
        next_expiry = 0.0
        while not self._drain_stop.is_set():
            with self._drain_wake:
                self._drain_wake.wait_for(lambda: self._kicked or self._drain_stop.is_set(), timeout=1.0)
                self._kicked = False
                acked = self._take_acked()
                rewind, self._rewind = self._rewind, False
                if rewind:  # a new connection: paho dropped its copies; hand out everything unacknowledged again
                    self._inflight.clear()
                room = self._window - len(self._inflight)
            try:
                self.outbox.ack(acked)
                if rewind:
                    self.outbox.rewind()
                if time.monotonic() >= next_expiry:  # also while disconnected, so depth shows what is still worth sending
                    self.outbox.expire()
                    next_expiry = time.monotonic() + 5.0
                if room > 0 and self.connected and not self._drain_stop.is_set():
                    for message in self.outbox.take(room):
                        self._send_event(message)
            except Exception:  # this thread must not die silently; the next wake-up tries again
                logger.exception("draining the outbox failed")
                self._drain_stop.wait(1.0)
            with self._drain_wake:
                self._drain_wake.notify_all()  # close() waits on the depth
        with self._drain_wake:  # acknowledged while stopping: not sent again at the next start
            acked = self._take_acked()
        try:
            self.outbox.ack(acked)
        except Exception:
            logger.exception("deleting acknowledged events from the outbox failed")

    def _send_event(self, message: Any) -> None:
        """Hand one spooled event to paho, or reject it when it is larger than the broker accepts."""
        event_topic = message.mqtt_topic or _topic_of(message, self._mqtt.topic_prefix)
        size = publish_size(event_topic, message.payload, 1, self._mqtt5)
        if not self.link.fits(size):
            # It would be refused, or would close the connection, on every try: out of the spool, counted as
            # rejected (a seq gap for subscribers), said once.
            self.outbox.ack([message.id])
            self._rejected += 1
            self._oversized(f"event seq {message.seq}", "events", size, "dropped from the outbox (outbox_rejected)")
            return
        # While disconnected paho keeps a QoS 1 message (rc NO_CONN); on_connect drops it and it is handed out again.
        info = self._client.publish(event_topic, message.payload, qos=1)
        self._disproved(self.link.sent(f"event seq {message.seq}", size, info.mid))
        with self._drain_wake:
            self._inflight[info.mid] = message.id

    def _oversized(self, what: str, kind: str, size: int, fate: str) -> None:
        self._too_large += 1
        if kind in self._too_large_said:
            return
        self._too_large_said.add(kind)
        link, (largest_kind, largest) = self.link, self._largest
        if link.advertised is not None and (link.refused is None or link.advertised < link.refused):
            known = f"accepts messages of at most {link.advertised} bytes (its Maximum Packet Size)"
        else:
            known = (f"refused a message of {link.refused} bytes (it closed the connection right after receiving one, "
                     f"each time), so it accepts less than that")
        logger.error("MQTT broker %s %s; %s is %d bytes: %s. Raise the broker's max_packet_size (Mosquitto; "
                     "message_size_limit is older) to at least %d, edged's largest message (its %s); further %s "
                     "messages that do not fit are counted in stats (mqtt_too_large), not logged", self._broker, known,
                     what, size, fate, max(largest, size), largest_kind, kind.removesuffix("s"))

    def _acked(self, mid: int) -> None:
        """An acknowledgement from the broker (paho's network thread): it may disprove a learned limit."""
        self._disproved(self.link.acked(mid))

    def _disproved(self, disproved: int | None) -> None:
        if disproved is not None:
            logger.info("MQTT broker %s accepted a message of %d bytes or more: the limit learned from its drops no "
                        "longer holds, larger messages are sent again", self._broker, disproved)
            self._too_large_said.clear()
            self.outbox.set_refused_size(self._broker, None)

    def _on_unsubscribe(self, client: paho.Client, userdata: Any, mid: int, reasons: Any, properties: Any) -> None:
        self._acked(mid)  # the confirmation asked for in _publish_to

    def _take_acked(self) -> list[int]:
        """Outbox ids of the in-flight events acknowledged since the last call; with `_drain_wake` held."""
        mids, self._acked_mids = self._acked_mids, []
        return [self._inflight.pop(mid) for mid in mids if mid in self._inflight]

    # -- below: called with self._lock held, or from paho's network thread --

    def _publish(self, name: str, payload: str, qos: int, retain: bool) -> paho.MQTTMessageInfo | None:
        """Publish on `<prefix>/<device>/<name>`; None, with one error, when the broker would not take its size."""
        return self._publish_to(self.topics[name], name, payload, qos, retain)

    def _publish_to(self, to: str, key: str, payload: str, qos: int, retain: bool) -> paho.MQTTMessageInfo | None:
        size = publish_size(to, payload, qos, self._mqtt5)
        if not self.link.fits(size):
            if key in ("state", "stats") and self.link.probe(size):  # latest-value topics: a lost one costs nothing
                logger.info("trying a %d-byte %s on MQTT broker %s, which refused %d bytes before", size, key,
                            self._broker, self.link.refused)
            else:
                self._oversized(f"this {key} message", key.split()[0], size, "not sent")
                return None
        try:
            info = self._client.publish(to, payload, qos=qos, retain=retain)
        except ValueError as exc:
            raise BrokerError(f"cannot publish on {to}: {exc}") from exc
        self._disproved(self.link.sent(key, size, info.mid if qos else None))
        if not qos and info.rc == paho.MQTT_ERR_SUCCESS and self.link.wants_confirmation(size):
            # Nothing acknowledges QoS 0: an UNSUBSCRIBE of a topic edged never subscribes to does (the broker reads
            # in order), so a later drop is not blamed on this message, and no subscriber sees a thing.
            rc, mid = self._client.unsubscribe(self.topics["status"])
            if rc == paho.MQTT_ERR_SUCCESS and mid is not None:
                self._disproved(self.link.sent("confirm", 0, mid))
        return info

    def _send_state(self) -> None:
        seq = self.outbox.next_seq("state")
        faces = [Face.from_track(t) for t in self._tracks]
        payload = State(device=self._device, ts=utc_iso(self._faces_ts), seq=seq, faces=faces)
        self._publish("state", payload.to_json(), qos=0, retain=True)
        self._faces_key = _key(self._tracks)
        self._state_sent_mono = time.monotonic()
        self._state_pending = False

    def _on_publish(self, client: paho.Client, userdata: Any, mid: int, reason: ReasonCode, properties: Any) -> None:
        # Runs in paho's network thread under its message lock: note the mid and wake the drain, nothing more.
        self._acked(mid)
        if reason.is_failure:
            # MQTT 5: the broker refused it (not authorised, quota...). Resending would be refused again: it leaves
            # the spool like an acknowledged one, counted in stats (outbox_rejected), a gap for subscribers.
            self._rejected += 1
            if self._rejected == 1:
                logger.error("MQTT broker %s:%s rejected a message (%s); it is dropped, not retried",
                             self._mqtt.host, self._mqtt.port, reason)
        with self._drain_wake:
            self._acked_mids.append(mid)
            self._kicked = True
            self._drain_wake.notify_all()

    def _on_connect(self, client: paho.Client, userdata: Any, flags: Any, reason: ReasonCode, properties: Any) -> None:
        self._answered = True
        if reason.is_failure:
            self._fail(refusal_message(self._mqtt, reason))
            return
        client.drop_out_messages()  # paho would resend them before the drain could check their size
        with self._drain_wake:
            self._rewind = True
        refusal = self.link.connected(getattr(properties, "MaximumPacketSize", None))
        if refusal is not None:
            self._refused(refusal)
        try:
            if self._discovery is not None:  # configs before state, so Home Assistant has the sensors first
                self._send_discovery()
                client.subscribe(self._discovery.status_topic, qos=1)
            # State first, so a dashboard that sees `online` already has the current faces.
            with self._lock:
                self._send_state()
                self._publish("status", STATUS_ONLINE, qos=1, retain=True)
                self._send_stats()  # the latest figures at once, not a stats interval later
        except Exception:  # an exception here would kill paho's network thread
            logger.exception("publishing state and status after connecting failed")
        self._last_error = None
        self._connected.set()
        self._kick()  # the backlog follows the live state
        if self._ever_connected:
            logger.info("MQTT connection to %s is back; %d events in the outbox", where(self._mqtt), self.outbox.depth)
        else:
            limit = self.link.advertised
            logger.info("connected to MQTT broker %s as %s (MQTT %s%s); %d events in the outbox", where(self._mqtt),
                        self.client_id, self._mqtt.protocol, f", packets up to {limit} bytes" if limit else "",
                        self.outbox.depth)
        self._ever_connected = True

    def _refused(self, refusal: Refusal) -> None:
        # Each kind's error is said once per process; a lowered bound is this warning only.
        how = (f"{refusal.strikes} times, each right after receiving a message of {refusal.size} bytes or more (the "
               f"smallest: {refusal.key})" if refusal.strikes > 1 else
               f"again, right after receiving a {refusal.size}-byte message ({refusal.key})")
        logger.warning("MQTT broker %s dropped the connection %s, and took edged back at once: taken as larger than the "
                       "broker accepts", self._broker, how)
        self.outbox.set_refused_size(self._broker, refusal.size)

    def _send_discovery(self) -> None:
        assert self._discovery is not None
        for config_topic, payload in self._discovery.messages():
            self._publish_to(config_topic, f"discovery {config_topic}", payload, qos=1, retain=True)

    def _on_message(self, client: paho.Client, userdata: Any, message: paho.MQTTMessage) -> None:
        # Home Assistant announces `online` when it (re)starts: send discovery again, as its docs ask.
        if self._discovery is not None and self._discovery.is_birth(message.topic, message.payload):
            try:
                self._send_discovery()
            except Exception:  # an exception here would kill paho's network thread
                logger.exception("sending Home Assistant discovery again failed")

    def _on_connect_fail(self, client: paho.Client, userdata: Any) -> None:
        # paho calls this inside its `except OSError:`, so the exception is at hand; it tells a TLS failure apart.
        self.link.connect_failed()
        self._fail(connect_failure_message(self._mqtt, sys.exc_info()[1]) + "; retrying")

    def _on_disconnect(self, client: paho.Client, userdata: Any, flags: Any, reason: ReasonCode, props: Any) -> None:
        was_connected = self._connected.is_set()
        self._connected.clear()
        answered, self._answered = self._answered, False
        if self._closing or (answered and not was_connected):
            return
        if not was_connected:  # a TCP connection without a CONNACK: not an MQTT listener of the configured kind
            self._fail(no_connack_message(self._mqtt, "keep alive" in str(reason).lower()) + "; retrying")
            return
        drop = self.link.dropped(str(reason))
        if drop.takeover:
            if not self._takeover_said:
                logger.error("%s", takeover_message(self._mqtt, self.client_id, drop.explicit))
                self._takeover_said = True
            logger.debug("client id taken over again; next reconnect in %.1f s", self.link.backoff_s)
        elif self.link.backoff_s == self._mqtt.reconnect_min_s:
            logger.warning("lost the MQTT connection to %s (%s); reconnecting, events wait in the outbox",
                           where(self._mqtt), reason)
        if self.link.backoff_s == self._mqtt.reconnect_min_s:
            self._takeover_said = False
        # paho's own backoff starts again at its minimum after every accepted connection: a takeover would flap
        client.reconnect_delay_set(self.link.backoff_s, max(self.link.backoff_s, self._mqtt.reconnect_max_s))  # type: ignore[arg-type]

    def _fail(self, message: str) -> None:
        # paho retries forever; say it once per distinct reason, not once per attempt.
        if message != self._last_error:
            logger.error("%s", message)
        self._last_error = message


def _topic_of(message: Any, prefix: str) -> str:
    """The topic of an event spooled by an edged that did not record it (outbox schema 1): its payload's device's."""
    try:
        device = json.loads(message.payload)["device"]
    except (ValueError, KeyError, TypeError):
        return f"{prefix}/unknown/{message.topic}"
    return topic(prefix, device, message.topic)


def _key(tracks: list[Track]) -> frozenset[tuple[int, str]]:
    """What makes a state worth sending at once: which faces are in view and their emotions."""
    return frozenset((t.id, t.emotion) for t in tracks)
