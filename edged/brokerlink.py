"""What the broker tells edged, classified once for `edged run` and `edged check`: refusals, failures, limits.

Messages (the same words in the daemon's log and in `edged check`):
- `refusal_message`: a refused CONNACK, with the variables to check for credentials;
- `connect_failure_message`: the TCP or TLS connection failed (the exception paho hands over);
- `no_connack_message`: a TCP connection that got no CONNACK (closed, or silent until the keepalive ran out):
  a port that does not speak MQTT, typically a TLS port with EDGED_MQTT__TLS off or the other way round.

`LinkMonitor` (no I/O, its own clock) watches one client's connections and recognises two faults that a broker
reports only by dropping the connection:
- **a message larger than the broker accepts**: MQTT 5 brokers advertise a Maximum Packet Size in the CONNACK;
  otherwise (MQTT 3.1.1, or Mosquitto's `message_size_limit`) the broker just closes the connection when one
  arrives. A drop while messages are unconfirmed strikes the largest of them (a PUBACK confirms everything sent
  before it, since the broker reads in order); STRIKES drops on one message teach the monitor a limit below its
  size. Messages at or above `limit` are then not sent (events are rejected, state and stats skipped), instead
  of reconnecting for ever.
- **a client-id takeover**: two clients with one id knock each other off. MQTT 5 says so (reason "Session taken
  over"); otherwise (MQTT 3.1.1, or Mosquitto 2.0, which gives no reason) it is STRIKES drops in a row with
  everything confirmed, each soon after connecting, and the broker reachable in between.
  The reconnect wait then doubles with every takeover (up to the configured maximum) instead of flapping.
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
    if isinstance(exc, ssl.SSLError):
        return f"TLS handshake with MQTT broker {where(mqtt)} failed: {_ssl_reason(exc)}{_SSL_HINT}"
    if isinstance(exc, OSError):
        return f"cannot reach MQTT broker {where(mqtt)}: {exc.strerror or exc}"
    return f"cannot reach MQTT broker {where(mqtt)}" + (f": {exc}" if exc else "")


def no_connack_message(mqtt: MqttSettings, timed_out: bool) -> str:
    """A TCP connection that never got a CONNACK: the port is not an MQTT listener of the kind configured."""
    what = (f"accepted the TCP connection but sent no CONNACK within {mqtt.keepalive} s "
            f"({env_name('mqtt', 'keepalive')})" if timed_out else "closed the connection without answering CONNECT")
    tls = env_name("mqtt", "tls")
    hint = (f"is port {mqtt.port} a TLS port without TLS? Set {tls}=true (8883 usually is TLS)" if not mqtt.tls else
            f"is port {mqtt.port} a plain MQTT port? {tls} is true (1883 is usually plain)")
    return f"MQTT broker {where(mqtt)} {what}: {hint}, or check {env_name('mqtt', 'port')}"


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


@dataclass
class _Sent:
    key: str  # what it was: "event <seq>", "state", "stats", "status", "discovery <topic>"
    size: int
    mid: int | None  # QoS 1: its packet id, confirmed by the PUBACK


@dataclass(frozen=True)
class Drop:
    """What a lost connection was: a takeover, a message too large (`key`, `size`), or neither (both None)."""

    takeover: bool = False
    explicit: bool = False  # MQTT 5 said so
    too_large_key: str | None = None
    too_large_size: int | None = None
    strikes: int = 0


class LinkMonitor:
    """The broker's limits and the pattern of one client's drops (module docstring); thread-safe."""

    def __init__(self, reconnect_min_s: float, reconnect_max_s: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._lock = threading.Lock()
        self._clock = clock
        self.reconnect_min_s, self.reconnect_max_s = reconnect_min_s, reconnect_max_s
        self.advertised: int | None = None  # the broker's Maximum Packet Size (MQTT 5 CONNACK)
        self.learned: int | None = None  # the largest size still believed to pass, after STRIKES drops
        self.backoff_s = reconnect_min_s  # the next reconnect wait
        self.takeovers = 0
        self.disconnects = 0
        self._sent: list[_Sent] = []
        self._strikes: dict[str, int] = {}
        self._unexplained = 0
        self._connected_at = 0.0

    @property
    def limit(self) -> int | None:
        """The largest PUBLISH packet the broker accepts, as far as known (bytes); None when unknown."""
        known = [x for x in (self.advertised, self.learned) if x is not None]
        return min(known) if known else None

    def fits(self, size: int) -> bool:
        limit = self.limit
        return limit is None or size <= limit

    def connected(self, advertised: int | None) -> None:
        with self._lock:
            self.advertised = advertised
            self._sent = []
            self._connected_at = self._clock()

    def sent(self, key: str, size: int, mid: int | None) -> None:
        with self._lock:
            self._sent.append(_Sent(key, size, mid))
            del self._sent[:-1000]  # only the unconfirmed tail matters; a long connection must not grow this

    def acked(self, mid: int) -> None:
        """A PUBACK: this message and everything sent before it reached the broker."""
        with self._lock:
            for i, sent in enumerate(self._sent):
                if sent.mid == mid:
                    for confirmed in self._sent[: i + 1]:
                        self._strikes.pop(confirmed.key, None)
                    del self._sent[: i + 1]
                    return

    def connect_failed(self) -> None:
        """The broker could not be reached: it was away (a restart), which explains the drop before it."""
        with self._lock:
            self._unexplained = 0

    def dropped(self, reason: str) -> Drop:
        """An established connection ended without edged asking: classify it, adjust the backoff."""
        with self._lock:
            self.disconnects += 1
            soon = self._clock() - self._connected_at < max(TAKEOVER_WINDOW_S, 2 * self.reconnect_max_s)
            unconfirmed, self._sent = self._sent, []
            if reason == "Session taken over":
                return self._takeover(explicit=True)
            if not soon:
                self._calm()
            if unconfirmed:
                self._unexplained = 0
                culprit = max(unconfirmed, key=lambda s: s.size)
                strikes = self._strikes[culprit.key] = self._strikes.get(culprit.key, 0) + 1
                if strikes >= STRIKES or reason == "Packet too large":
                    self._strikes.pop(culprit.key, None)
                    self.learned = min(self.learned or culprit.size, culprit.size - 1)
                    return Drop(too_large_key=culprit.key, too_large_size=culprit.size, strikes=strikes)
                return Drop(strikes=strikes)
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
