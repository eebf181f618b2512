"""Publishing to MQTT: the `Publisher` role and its paho-mqtt 2 backend (contract: docs/mqtt.md).

Topics under `<prefix>/<device>/`: `status` (online/offline, retained, also the Last Will), `events` (QoS 1),
`state` and `stats` (retained). paho's network thread does all I/O and reconnects with backoff by itself.
"""

from __future__ import annotations

import logging
import math
import ssl
import threading
import time
from pathlib import Path
from typing import Any, Protocol

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode
from pydantic import SecretStr

from edged.discovery import HomeAssistantDiscovery
from edged.errors import BrokerError
from edged.faces import Track, TrackEvent
from edged.payloads import STATUS_OFFLINE, STATUS_ONLINE, TOPICS, Event, Face, State, Stats, utc_iso
from edged.settings import MqttSettings, env_name

logger = logging.getLogger(__name__)

THERMAL_PATH = Path("/sys/class/thermal/thermal_zone0/temp")
# Events queued while the broker is away; beyond this they are dropped, which subscribers see as a seq gap.
MAX_QUEUED_EVENTS = 1000
_CREDENTIAL_REASONS = {"Bad user name or password", "Not authorized"}


class Publisher(Protocol):
    """Where the pipeline sends what it sees."""

    def start(self) -> None: ...
    def event(self, event: TrackEvent) -> None: ...
    def state(self, tracks: list[Track], ts_utc: float) -> None: ...
    def stats(self, stats: dict[str, Any]) -> None: ...
    def close(self, timeout: float = 5.0) -> None: ...

    @property
    def connected(self) -> bool: ...


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
            # ca_certs=None makes paho load the system CA store.
            client.tls_set(
                ca_certs=str(mqtt.ca_file) if mqtt.ca_file else None,
                certfile=str(mqtt.cert_file) if mqtt.cert_file else None,
                keyfile=str(mqtt.key_file) if mqtt.key_file else None,
            )
            client.tls_insecure_set(mqtt.tls_insecure)
        client.reconnect_delay_set(mqtt.reconnect_min_s, mqtt.reconnect_max_s)  # type: ignore[arg-type]  # floats work
    except (ssl.SSLError, OSError, ValueError) as exc:
        raise BrokerError(f"cannot set up the MQTT client for {mqtt.host}:{mqtt.port}: {exc}") from exc
    return client


def refusal_message(mqtt: MqttSettings, reason: ReasonCode | str) -> str:
    """A refused CONNACK in words, pointing at the variables to fix when it is about credentials."""
    text = f"MQTT broker {mqtt.host}:{mqtt.port} refused the connection: {reason}"
    if str(reason) in _CREDENTIAL_REASONS:
        text += f"; check {env_name('mqtt', 'username')} and {env_name(None, 'mqtt_password')}"
    return text


def read_cpu_temp(path: Path = THERMAL_PATH) -> float | None:
    """CPU temperature in °C from a sysfs thermal zone (millidegrees), None where there is none."""
    try:
        return round(int(path.read_text().strip()) / 1000, 1)
    except (OSError, ValueError):
        return None


class MqttPublisher:
    """Publishes events, state, stats and status for one device; thread-safe."""

    def __init__(
        self,
        mqtt: MqttSettings,
        device_id: str,
        password: SecretStr | None,
        model_id: str,
        version: str,
        *,
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

        # Held while a seq is taken and its message handed to paho, so seq order is wire order.
        self._lock = threading.Lock()
        self._seq = {"events": 0, "state": 0, "stats": 0}
        self._faces: list[Face] = []  # the latest faces the pipeline reported, republished on reconnect
        self._faces_ts = time.time()
        self._faces_key: frozenset[tuple[int, str]] | None = None  # what the last published state showed
        self._state_sent_mono = -math.inf
        self._state_pending = False

        # QoS 1 messages not yet acknowledged; on_publish runs under paho's own lock, so it gets its own.
        self._acks = threading.Condition()
        self._unacked: set[int] = set()
        self._early_acks: set[int] = set()

        self._connected = threading.Event()
        self._ever_connected = False
        self._started = False
        self._closing = False
        self._last_error: str | None = None

        self._client = build_client(mqtt, self.client_id, password)
        self._client.max_queued_messages_set(MAX_QUEUED_EVENTS)
        self._client.will_set(self.topics["status"], STATUS_OFFLINE, qos=1, retain=True)
        self._client.on_connect = self._on_connect
        self._client.on_connect_fail = self._on_connect_fail
        self._client.on_disconnect = self._on_disconnect
        self._client.on_publish = self._on_publish
        self._client.on_message = self._on_message

    @property
    def connected(self) -> bool:
        """True between an accepted CONNACK and the next disconnect."""
        return self._connected.is_set()

    @property
    def last_error(self) -> str | None:
        """Why the last connection attempt failed (refused CONNACK, unreachable), None once connected."""
        return self._last_error

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

    def event(self, event: TrackEvent) -> None:
        """Publish one track event (QoS 1); queued while the broker is away."""
        with self._lock:
            self._seq["events"] += 1
            payload = Event.from_track_event(event, self._device, self._seq["events"]).to_json()
            info = self._publish("events", payload, qos=1, retain=False)
        self._track_ack(info)

    def state(self, tracks: list[Track], ts_utc: float) -> None:
        """Report the faces in view now; published at most every state_interval_s, at once when they change."""
        faces = [Face.from_track(t) for t in tracks]  # a snapshot: the tracker keeps mutating its tracks
        with self._lock:
            self._faces, self._faces_ts = faces, ts_utc
            changed = self._faces_key != _key(faces)
            due = time.monotonic() - self._state_sent_mono >= self._mqtt.state_interval_s
            self._state_pending = True
            if self.connected and (changed or due):
                self._send_state()

    def stats(self, stats: dict[str, Any]) -> None:
        """Publish the pipeline's figures (fps, latency_ms, frames, frames_dropped, faces_seen, queue_depth,
        uptime_s) with version, model id and CPU temperature; retained. Skipped while disconnected."""
        if not self.connected:
            return
        with self._lock:
            self._seq["stats"] += 1
            payload = Stats(
                device=self._device,
                ts=utc_iso(time.time()),
                seq=self._seq["stats"],
                version=self._version,
                model_id=self._model_id,
                cpu_temp_c=read_cpu_temp(self._thermal_path),
                **stats,
            ).to_json()
            self._publish("stats", payload, qos=0, retain=True)

    def close(self, timeout: float = 5.0) -> None:
        """Flush pending state, publish `offline`, wait up to `timeout` s for QoS 1 acks, then disconnect."""
        if not self._started or self._closing:
            return
        self._closing = True
        deadline = time.monotonic() + timeout
        try:
            if self.connected:
                with self._lock:
                    if self._state_pending:
                        self._send_state()
                    info = self._publish("status", STATUS_OFFLINE, qos=1, retain=True)
                self._track_ack(info)
                with self._acks:
                    if not self._acks.wait_for(lambda: not self._unacked, max(0.0, deadline - time.monotonic())):
                        logger.warning("%d MQTT messages not acknowledged before closing", len(self._unacked))
            self._client.disconnect()
        finally:
            self._client.loop_stop()
            self._connected.clear()

    # -- below: called with self._lock held, or from paho's network thread --

    def _publish(self, name: str, payload: str, qos: int, retain: bool) -> paho.MQTTMessageInfo:
        try:
            info = self._client.publish(self.topics[name], payload, qos=qos, retain=retain)
        except ValueError as exc:
            raise BrokerError(f"cannot publish on {self.topics[name]}: {exc}") from exc
        if info.rc == paho.MQTT_ERR_QUEUE_SIZE:
            logger.warning("MQTT queue full (%d messages): dropping %s", MAX_QUEUED_EVENTS, name)
        return info

    def _send_state(self) -> None:
        self._seq["state"] += 1
        payload = State(device=self._device, ts=utc_iso(self._faces_ts), seq=self._seq["state"], faces=self._faces)
        self._publish("state", payload.to_json(), qos=0, retain=True)
        self._faces_key = _key(self._faces)
        self._state_sent_mono = time.monotonic()
        self._state_pending = False

    def _track_ack(self, info: paho.MQTTMessageInfo) -> None:
        if info.rc == paho.MQTT_ERR_QUEUE_SIZE:
            return  # never queued, never acknowledged
        with self._acks:
            if info.mid in self._early_acks:
                self._early_acks.discard(info.mid)
            else:
                self._unacked.add(info.mid)

    def _on_publish(self, client: paho.Client, userdata: Any, mid: int, reason: ReasonCode, properties: Any) -> None:
        with self._acks:
            if mid in self._unacked:
                self._unacked.discard(mid)
            else:
                self._early_acks.add(mid)  # acknowledged before publish() returned to us
            self._acks.notify_all()

    def _on_connect(self, client: paho.Client, userdata: Any, flags: Any, reason: ReasonCode, properties: Any) -> None:
        if reason.is_failure:
            self._fail(refusal_message(self._mqtt, reason))
            return
        try:
            if self._discovery is not None:  # configs before state, so Home Assistant has the sensors first
                self._send_discovery()
                client.subscribe(self._discovery.status_topic, qos=1)
            # State first, so a dashboard that sees `online` already has the current faces.
            with self._lock:
                self._send_state()
                info = self._publish("status", STATUS_ONLINE, qos=1, retain=True)
            self._track_ack(info)
        except Exception:  # an exception here would kill paho's network thread
            logger.exception("publishing state and status after connecting failed")
        self._last_error = None
        self._connected.set()
        where = f"{self._mqtt.host}:{self._mqtt.port}"
        if self._ever_connected:
            logger.info("MQTT connection to %s is back", where)
        else:
            logger.info("connected to MQTT broker %s as %s (MQTT %s)", where, self.client_id, self._mqtt.protocol)
        self._ever_connected = True

    def _send_discovery(self) -> None:
        assert self._discovery is not None
        for config_topic, payload in self._discovery.messages():
            self._client.publish(config_topic, payload, qos=1, retain=True)

    def _on_message(self, client: paho.Client, userdata: Any, message: paho.MQTTMessage) -> None:
        # Home Assistant announces `online` when it (re)starts: send discovery again, as its docs ask.
        if self._discovery is not None and self._discovery.is_birth(message.topic, message.payload):
            try:
                self._send_discovery()
            except Exception:  # an exception here would kill paho's network thread
                logger.exception("sending Home Assistant discovery again failed")

    def _on_connect_fail(self, client: paho.Client, userdata: Any) -> None:
        self._fail(f"cannot reach MQTT broker {self._mqtt.host}:{self._mqtt.port}; retrying")

    def _on_disconnect(self, client: paho.Client, userdata: Any, flags: Any, reason: ReasonCode, props: Any) -> None:
        was_connected = self._connected.is_set()
        self._connected.clear()
        if was_connected and not self._closing:
            where = f"{self._mqtt.host}:{self._mqtt.port}"
            logger.warning("lost the MQTT connection to %s (%s); reconnecting", where, reason)

    def _fail(self, message: str) -> None:
        # paho retries forever; say it once per distinct reason, not once per attempt.
        if message != self._last_error:
            logger.error("%s", message)
        self._last_error = message


def _key(faces: list[Face]) -> frozenset[tuple[int, str]]:
    """What makes a state worth sending at once: which faces are in view and their emotions."""
    return frozenset((f.track, f.emotion) for f in faces)
