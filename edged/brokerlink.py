"""What the broker tells edged, classified once for `edged run` and `edged check`: refusals, failures, limits.

Messages (the same words in the daemon's log and in `edged check`):
- `refusal_message`: a refused CONNACK, with the variables to check for credentials;
- `connect_failure_message`: the TCP or TLS connection failed (the exception paho hands over);
- `no_connack_message`: a TCP connection that got no CONNACK (closed, or silent until the keepalive ran out):
  a port that does not speak MQTT, typically a TLS port with EDGED_MQTT__TLS off or the other way round.

`LinkMonitor` (no I/O, its own clock) watches one client's connections and recognises two faults that a broker
reports only by dropping the connection:
- **a message larger than the broker accepts**: MQTT 5 brokers advertise a Maximum Packet Size in the CONNACK;
  otherwise (MQTT 3.1.1, or Mosquitto's `message_size_limit`) the broker just closes the connection as soon as it
  reads one. Evidence is weighed, since a wrongly learned limit loses data:
  - a *suspect* is a message sent within SUSPECT_S before the drop, never confirmed, and larger than anything the
    broker confirmed since it was last away. An acknowledgement (PUBACK, UNSUBACK) confirms everything sent before
    it, since the broker reads in order; a QoS 0 state or stats larger than anything confirmed is followed by an
    UNSUBSCRIBE of a topic edged never subscribed to, whose UNSUBACK confirms it (no subscriber sees anything);
  - a drop with a suspect is judged at the next connection attempt: a broker that cannot be reached was away (a
    restart), which explains the drop; one that takes the client back at once makes it a strike;
  - STRIKES strikes within STRIKE_SPAN_S teach an upper bound: the broker refused a message of N bytes (the
    smallest struck), so its limit is below N, and every message of N bytes or more is taken as too large (events
    are rejected, state and stats skipped) instead of reconnecting for ever. Once a bound is known, one more strike
    lowers it;
  - the bound is dropped when the broker confirms a message at least that large: a state or stats above it is
    tried once every probe interval and after the broker was away or dropped the connection for no reason seen
    (a restart, maybe with a new configuration).
  The publisher keeps the bound in the outbox, per broker, so a restart does not learn it again.
- **a client-id takeover**: two clients with one id knock each other off. MQTT 5 says so (reason "Session taken
  over"); otherwise (MQTT 3.1.1, or Mosquitto 2.0, which gives no reason) it is STRIKES drops in a row without a
  suspect, each soon after connecting, and the broker reachable in between (a drop with a suspect counts neither
  way). The reconnect wait then doubles with every takeover (up to the configured maximum) instead of flapping.
"""

from __future__ import annotations

import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from edged.settings import MqttSettings, env_name

STRIKES = 3  # drops pinned on one message, or unexplained drops in a row, before edged draws a conclusion
# A connection that ends this soon, or within 2x the longest reconnect wait (the other device's wait once it backs
# off too), with everything acknowledged and no reason given, may be a takeover; 3 in a row without the broker
# being away in between are taken as one.
TAKEOVER_WINDOW_S = 10.0
# A broker closes the connection as soon as it reads an oversized packet: only a message sent this shortly before a
# drop can have caused it (seconds; a round trip to the broker and back, with room).
SUSPECT_S = 2.0
# Strikes count toward a conclusion for this long (seconds), or four longest reconnect waits if that is longer.
STRIKE_SPAN_S = 600.0
# A limit learned from drops is tried again (one state or stats above it) this often (seconds).
PROBE_INTERVAL_S = 3600.0
# The state message sized for `message_sizes`: this many faces in view at once.
FACES_SIZED = 8
# MQTT 5 DISCONNECT reasons of a broker going away on purpose: not evidence of anything the client sent.
_AWAY_REASONS = {"Server shutting down", "Server busy", "Server moved", "Use another server", "Administrative action"}
_CREDENTIAL_REASONS = {"Bad user name or password", "Not authorized"}
_SSL_HINT = "; check EDGED_MQTT__CA_FILE (the CA that signed the broker's certificate) and EDGED_MQTT__HOST"


def where(mqtt: MqttSettings) -> str:
    return f"[{mqtt.host}]:{mqtt.port}" if ":" in mqtt.host else f"{mqtt.host}:{mqtt.port}"


def refusal_message(mqtt: MqttSettings, reason: Any) -> str:
    """A refused CONNACK in words, pointing at the variables to fix when it is about credentials."""
    text = f"MQTT broker {where(mqtt)} refused the connection: {reason}"
    if str(reason) in _CREDENTIAL_REASONS:
        text += f"; check {env_name('mqtt', 'username')} and {env_name(None, 'mqtt_password')}"
    return text


def connect_failure_message(mqtt: MqttSettings, exc: BaseException | None) -> str:
    """Why a TCP or TLS connection attempt failed (paho's on_connect_fail runs inside its `except OSError`)."""
    if mqtt.tls and _cut_handshake(exc):  # a plain MQTT listener reads the ClientHello as garbage and hangs up
        return f"MQTT broker {where(mqtt)} closed the connection during the TLS handshake: {_port_hint(mqtt)}"
    if isinstance(exc, ssl.SSLError):
        return f"TLS handshake with MQTT broker {where(mqtt)} failed: {_ssl_reason(exc)}{_SSL_HINT}"
    if isinstance(exc, OSError):
        return f"cannot reach MQTT broker {where(mqtt)}: {exc.strerror or exc}"
    return f"cannot reach MQTT broker {where(mqtt)}" + (f": {exc}" if exc else "")


def no_connack_message(mqtt: MqttSettings, timed_out: bool) -> str:
    """A TCP connection that never got a CONNACK: the port is not an MQTT listener of the kind configured."""
    what = (f"accepted the TCP connection but sent no CONNACK within {mqtt.keepalive} s "
            f"({env_name('mqtt', 'keepalive')})" if timed_out else "closed the connection without answering CONNECT")
    return f"MQTT broker {where(mqtt)} {what}: {_port_hint(mqtt)}"


def _port_hint(mqtt: MqttSettings) -> str:
    tls = env_name("mqtt", "tls")
    hint = (f"is port {mqtt.port} a TLS port without TLS? Set {tls}=true (8883 usually is TLS)" if not mqtt.tls else
            f"is port {mqtt.port} a plain MQTT port? {tls} is true (1883 is usually plain)")
    return f"{hint}, or check {env_name('mqtt', 'port')}"


def _cut_handshake(exc: BaseException | None) -> bool:
    """The peer closed or reset the connection in the middle of the TLS handshake (not a certificate failure)."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return False
    if isinstance(exc, ssl.SSLEOFError | ConnectionResetError | BrokenPipeError):
        return True
    return isinstance(exc, ssl.SSLError) and exc.reason in {"WRONG_VERSION_NUMBER", "UNEXPECTED_EOF_WHILE_READING",
                                                            "RECORD_LAYER_FAILURE"}


def takeover_message(mqtt: MqttSettings, client_id: str, explicit: bool) -> str:
    how = ("the broker says another client took over the session" if explicit else
           f"the broker closed the connection soon after connecting {STRIKES} times in a row")
    return (f"MQTT client id {client_id!r} is in use by another client ({how}): two devices with one id knock "
            f"each other off and publish the same seq numbers. Give each device its own {env_name(None, 'device_id')}"
            f" (or {env_name('mqtt', 'client_id')}); reconnecting with a growing wait meanwhile")


def _ssl_reason(exc: ssl.SSLError) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"certificate verify failed ({exc.verify_message})"
    return exc.reason or str(exc)


def _varint_len(n: int) -> int:
    size = 1
    while n >= 128:
        n //= 128
        size += 1
    return size


def publish_size(topic: str, payload: str | bytes, qos: int, mqtt5: bool) -> int:
    """Bytes of the PUBLISH packet paho sends: fixed header, topic, packet id (QoS > 0), properties (MQTT 5:
    an empty property list, one byte) and payload. What a broker's maximum packet size is compared with."""
    body = len(payload.encode() if isinstance(payload, str) else payload)
    remaining = 2 + len(topic.encode()) + (2 if qos else 0) + (1 if mqtt5 else 0) + body
    return 1 + _varint_len(remaining) + remaining


def message_sizes(mqtt: MqttSettings, device_id: str, discovery: Any = None) -> dict[str, int]:
    """Bytes of edged's largest messages of each kind (PUBLISH packets): an emotion_changed event, stats, a state
    with FACES_SIZED faces, and the Home Assistant discovery configs when `discovery` is given. What `edged check`
    compares an advertised limit with, and what the daemon recommends when a broker refuses a size."""
    from edged import __version__
    from edged.discovery import EMOTIONS
    from edged.payloads import Event, Face, State, Stats

    v5 = mqtt.protocol == "5"
    base = f"{mqtt.topic_prefix}/{device_id}"
    scores = {label: 0.1429 for label in EMOTIONS}
    ts = "2024-05-01T12:00:00.000Z"
    face = {"track": 99999, "emotion": "surprise", "confidence": 0.1429, "scores": scores, "box": (9999, 9999, 999, 999)}
    event = Event(device=device_id, ts=ts, seq=10**9, type="emotion_changed", previous_emotion="surprise", **face)
    state = State(device=device_id, ts=ts, seq=10**9, faces=[Face(**face) for _ in range(FACES_SIZED)])
    timing = {"p50": 9999.99, "p95": 9999.99}
    stats = Stats(device=device_id, ts=ts, seq=10**9, fps=999.9, frames=10**12, frames_dropped=10**12,
                  faces_seen=10**9, queue_depth=8, uptime_s=10**9, version=__version__,
                  model_id="emotions-int8-" + "x" * 32, cpu_temp_c=99.9,
                  latency_ms={s: timing for s in ("decode", "detect", "classify", "track", "publish")},
                  outbox_depth=10**6, outbox_dropped_full=10**9, outbox_dropped_expired=10**9,
                  outbox_write_errors=10**9, outbox_rejected=10**9, mqtt_disconnects=10**9, mqtt_takeovers=10**9,
                  mqtt_too_large=10**9)
    sizes = {"event": publish_size(f"{base}/events", event.to_json(), 1, v5),
             f"state with {FACES_SIZED} faces": publish_size(f"{base}/state", state.to_json(), 0, v5),
             "stats": publish_size(f"{base}/stats", stats.to_json(), 0, v5)}
    if discovery is not None:
        sizes["Home Assistant discovery"] = max(publish_size(t, p, 1, v5) for t, p in discovery.messages())
    return sizes


@dataclass
class _Sent:
    key: str  # what it was: "event seq <n>", "state", "stats", "status", "discovery <topic>", "confirm"
    size: int
    mid: int | None  # QoS 1 (or an UNSUBSCRIBE sent to confirm): its packet id, confirmed by the broker's ack
    at: float  # when it was handed to the client (the monitor's clock)


@dataclass(frozen=True)
class Drop:
    """What a lost connection was: a takeover, a suspect (a message that may be too large, judged at the next
    connection), or neither."""

    takeover: bool = False
    explicit: bool = False  # MQTT 5 said so
    suspect: str | None = None


@dataclass(frozen=True)
class Refusal:
    """A conclusion: the broker refuses messages of `size` bytes (and larger): `strikes` drops, each right after a
    message of at least that size, each followed by an accepted reconnect."""

    key: str
    size: int
    strikes: int


class LinkMonitor:
    """The broker's limits and the pattern of one client's drops (module docstring); thread-safe.

    refused: the smallest size the broker is known to refuse, remembered from before (the outbox keeps it).
    probe_interval_s: how long a learned limit is trusted before one larger message is tried again.
    """

    def __init__(self, reconnect_min_s: float, reconnect_max_s: float,
                 clock: Callable[[], float] = time.monotonic, *, refused: int | None = None,
                 probe_interval_s: float = PROBE_INTERVAL_S) -> None:
        self._lock = threading.Lock()
        self._clock = clock
        self.reconnect_min_s, self.reconnect_max_s = reconnect_min_s, reconnect_max_s
        self.advertised: int | None = None  # the broker's Maximum Packet Size (MQTT 5 CONNACK)
        self.refused = refused  # the smallest size the broker refused by dropping the connection (learned)
        self.accepted = 0  # the largest size the broker confirmed since it was last away
        self.probe_interval_s = probe_interval_s
        self._probe_at = clock() + probe_interval_s
        self.backoff_s = reconnect_min_s  # the next reconnect wait
        self.takeovers = 0
        self.disconnects = 0
        self._sent: list[_Sent] = []
        self._early: set[int] = set()  # acknowledged packet ids not recorded yet
        self._confirming = 0  # the largest size with a confirmation on its way
        self._pending: _Sent | None = None  # the last drop's suspect, judged by the next connection attempt
        self._strikes: list[_Sent] = []  # judged suspects, not yet a conclusion
        self._unexplained = 0
        self._connected_at = 0.0

    @property
    def limit(self) -> int | None:
        """The largest PUBLISH packet the broker accepts, as far as known (bytes); None when unknown."""
        known = [x for x in (self.advertised, None if self.refused is None else self.refused - 1) if x is not None]
        return min(known) if known else None

    def fits(self, size: int) -> bool:
        limit = self.limit
        return limit is None or size <= limit

    def probe(self, size: int) -> bool:
        """Whether a state or stats of `size` bytes, larger than the learned limit, is to be tried anyway (one
        message, then again after probe_interval_s): a limit learned from drops may be wrong, or gone."""
        with self._lock:
            if self.refused is None or size < self.refused or self._clock() < self._probe_at:
                return False
            if self.advertised is not None and size > self.advertised:
                return False
            self._probe_at = self._clock() + self.probe_interval_s
            return True

    def connected(self, advertised: int | None) -> Refusal | None:
        """An accepted CONNACK. The broker took the client back at once, so the last drop's suspect counts."""
        with self._lock:
            self.advertised = advertised
            self._sent, self._early = [], set()
            self._confirming = 0
            self._connected_at = self._clock()
            pending, self._pending = self._pending, None
            if pending is None:
                return None
            # Strikes are recent or nothing: rare coincidences spread over days are not a pattern.
            span = max(STRIKE_SPAN_S, 4 * self.reconnect_max_s)
            self._strikes = [s for s in (*self._strikes, pending) if self._connected_at - s.at <= span]
            # The first limit needs STRIKES such drops; once the broker is known to refuse a size, one more drop
            # right after a smaller message (still larger than anything it confirmed) lowers it.
            if len(self._strikes) < (1 if self.refused is not None else STRIKES):
                return None
            smallest = min(self._strikes, key=lambda s: s.size)
            strikes, self._strikes = len(self._strikes), []
            if self.refused is not None and smallest.size >= self.refused:
                return None
            self.refused = smallest.size
            return Refusal(smallest.key, smallest.size, strikes)

    def sent(self, key: str, size: int, mid: int | None) -> int | None:
        """A message handed to the client; returns what `acked` returns when its ack came first (paho's thread)."""
        with self._lock:
            self._sent.append(_Sent(key, size, mid, self._clock()))
            del self._sent[:-1000]  # only the unconfirmed tail matters; a long connection must not grow this
            if mid is not None and mid in self._early:
                self._early.discard(mid)
                return self._confirm(mid)
            return None

    def wants_confirmation(self, size: int) -> bool:
        """Whether a QoS 0 message of `size` bytes just sent is larger than anything the broker confirmed (or is
        about to): the publisher then asks for an acknowledgement (an UNSUBSCRIBE), so that a drop later cannot be
        blamed on it, and a limit learned wrongly is dropped."""
        with self._lock:
            if size <= max(self.accepted, self._confirming):
                return False
            self._confirming = size
            return True

    def acked(self, mid: int) -> int | None:
        """An acknowledgement (PUBACK, UNSUBACK): this packet and everything sent before it reached the broker,
        which reads in order. Returns the learned limit it disproves (a message at least that large got through)."""
        with self._lock:
            if not any(sent.mid == mid for sent in self._sent):  # acknowledged before `sent` recorded it
                self._early = {*list(self._early)[-63:], mid}
                return None
            return self._confirm(mid)

    def _confirm(self, mid: int) -> int | None:
        i = next(i for i, sent in enumerate(self._sent) if sent.mid == mid)
        confirmed, self._sent = self._sent[: i + 1], self._sent[i + 1:]
        self.accepted = max(self.accepted, *(s.size for s in confirmed))
        self._strikes = [s for s in self._strikes if s.size > self.accepted]
        if self.refused is not None and self.accepted >= self.refused:
            disproved, self.refused = self.refused, None
            return disproved
        return None

    def connect_failed(self) -> None:
        """The broker could not be reached: it was away (a restart), which explains the drop before it. It may
        come back configured differently: what it confirmed no longer counts, and a learned limit is tried again."""
        with self._lock:
            self._unexplained = 0
            self._pending = None
            self.accepted = self._confirming = 0
            self._probe_at = self._clock()

    def dropped(self, reason: str) -> Drop:
        """An established connection ended without edged asking: classify it, adjust the backoff."""
        with self._lock:
            self.disconnects += 1
            now = self._clock()
            soon = now - self._connected_at < max(TAKEOVER_WINDOW_S, 2 * self.reconnect_max_s)
            unconfirmed, self._sent = self._sent, []
            self._pending = None
            if reason == "Session taken over":
                return self._takeover(explicit=True)
            if reason in _AWAY_REASONS:  # MQTT 5: a broker shutting down (a restart) says so
                self._calm()
                self._probe_at = now
                return Drop()
            if not soon:
                self._calm()
            # A broker closes the connection as soon as it reads an oversized packet's header: a suspect is a
            # message sent just before, larger than anything the broker confirmed.
            suspects = [s for s in unconfirmed if s.size > self.accepted and now - s.at <= SUSPECT_S]
            if suspects:
                culprit = max(suspects, key=lambda s: s.size)
                if reason == "Packet too large":  # the broker said so: no need to judge
                    self._strikes = [culprit] * (STRIKES - 1)
                self._pending = culprit  # judged when the next connection attempt's outcome is known
                return Drop(suspect=culprit.key)  # neither for nor against a takeover
            self._probe_at = now  # a drop nothing explains may be a restart, maybe with a new configuration
            if soon and reason == "Unspecified error":  # a closed socket; a broker shutting down says so (MQTT 5)
                self._unexplained += 1
                if self._unexplained >= STRIKES:
                    return self._takeover(explicit=False)
            return Drop()

    def _takeover(self, explicit: bool) -> Drop:
        self.takeovers += 1
        self.backoff_s = min(self.reconnect_max_s, max(2 * self.backoff_s, 2 * self.reconnect_min_s, 1.0))
        return Drop(takeover=True, explicit=explicit)

    def _calm(self) -> None:
        self._unexplained = 0
        self.backoff_s = self.reconnect_min_s
