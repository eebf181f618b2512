"""`edged check`: is this installation ready to run? One (item, passed, detail, configuration) per component;
passed is None for a warning (printed WARN, not a failure).

`configuration` marks a failure that a restart cannot fix (a variable, a file edged cannot read, the model or the
cascade): `edged check` then exits 78, as `edged run` would; other failures (camera, broker, outbox) exit 1.

It reports what `edged run` would: the same messages for the outbox (edged/outbox.py: a lock held by another
edged, a disk that refuses writes) and for the broker (edged/brokerlink.py: refusals, TLS, a port that does not
answer CONNECT), and a broker whose maximum packet size is smaller than edged's messages. The broker check
connects with its own client id (`<client id>-check`) and publishes nothing, so it neither kicks a running daemon
off the broker nor flips the device's retained status.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, NamedTuple

from edged.errors import CascadeError, ConfigError, EdgedError, ModelError

if TYPE_CHECKING:
    from edged.settings import Settings

CONFIGURATION_ERRORS = (ConfigError, ModelError, CascadeError, PermissionError)


class Check(NamedTuple):
    name: str
    ok: bool | None  # None: a warning
    detail: str
    configuration: bool = False  # failed for a reason in the configuration (exit 78)


def run_checks(broker_timeout_s: float | None = 10.0) -> Iterator[Check]:
    """Configuration, cascade, model, camera, outbox, broker (skipped when `broker_timeout_s` is None)."""
    from edged.settings import load_settings

    try:
        settings = load_settings()
    except EdgedError as exc:
        yield Check("config", False, str(exc).replace("\n", "; "), configuration=True)
        return
    detail = f"device {settings.device_id}"
    if settings.homeassistant.enabled:  # what a broker ACL must let it write (docs/fleet.md)
        from edged.discovery import node_id

        node = node_id(settings.mqtt.topic_prefix, settings.device_id)
        detail += f", Home Assistant node id {node} ({settings.homeassistant.discovery_prefix}/sensor/{node}/#)"
    yield Check("config", True, detail)
    if settings.stock_device_id_warning:
        yield Check("config", None, settings.stock_device_id_warning)
    yield _guard("cascade", _cascade, settings)
    yield _guard("model", _model, settings)
    yield _guard("camera", _camera, settings)
    yield _guard("outbox", _outbox, settings)
    if broker_timeout_s is not None:
        yield _guard("broker", _broker, settings, broker_timeout_s)
    learned = _learned_limit(settings)
    if learned:
        yield Check("broker", None, learned)


def _learned_limit(settings: Settings) -> str | None:
    """What `edged run` learned from this broker's drops and keeps in the outbox (edged/brokerlink.py), if anything:
    run keeps sending nothing that large until the broker takes a message that large (a WARN: it may be stale)."""
    import sqlite3

    from edged.brokerlink import where
    from edged.outbox import FILE_NAME

    path = settings.state_dir / FILE_NAME
    if not path.exists():
        return None
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=2.0)
        try:
            row = db.execute("SELECT refused FROM broker_limit WHERE broker = ?", (where(settings.mqtt),)).fetchone()
        finally:
            db.close()
    except sqlite3.Error:  # no such table (an older outbox), or unreadable: the outbox check says so
        return None
    if row is None:
        return None
    kind, largest = max(message_sizes(settings).items(), key=lambda kv: kv[1])
    return (f"edged run found that MQTT broker {where(settings.mqtt)} refused a message of {row[0]} bytes (it closed "
            f"the connection right after receiving one), so it sends nothing that large until the broker takes one; "
            f"edged's largest message is its {kind} ({largest} bytes): raise the broker's max_packet_size to at "
            f"least {largest}")


def _guard(name: str, check: Any, *args: Any) -> Check:
    try:
        return Check(name, True, check(*args))
    except EdgedError as exc:
        return Check(name, False, str(exc), isinstance(exc, CONFIGURATION_ERRORS))
    except OSError as exc:  # a file no component checked first: named, not a traceback
        detail = f"{exc.filename or ''}: {exc.strerror or exc}".lstrip(": ")
        return Check(name, False, detail, isinstance(exc, CONFIGURATION_ERRORS))


def _cascade(settings: Settings) -> str:
    from edged.detector import HaarDetector

    return str(HaarDetector(settings.detector).path)


def _model(settings: Settings) -> str:
    from edged.classifier import EmotionClassifier

    model = EmotionClassifier.from_settings(settings.model)
    height, width = model.input_size
    return f"{model.path} ({model.model_id}, {width}x{height}, {len(model.labels)} emotions)"


def _camera(settings: Settings) -> str:
    from edged.camera import open_source
    from edged.errors import CameraError

    source = open_source(settings.camera)
    try:
        frame = source.read()
    finally:
        source.close()
    if frame is None:
        raise CameraError(f"camera source {settings.camera.source!r} opened but delivered no frame")
    height, width = frame.gray.shape[:2]
    return f"{settings.camera.source}: one {width}x{height} frame read"


def _outbox(settings: Settings) -> str:
    """Read-only: `edged check` runs as root from install.sh and must not leave a root-owned spool behind."""
    import os
    import sqlite3

    from edged.errors import ConfigError, OutboxError
    from edged.outbox import FILE_NAME, probe

    state = settings.state_dir
    path = state / FILE_NAME
    try:
        if not path.exists():
            existing = next(p for p in (state, *state.parents) if p.exists())
            if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
                raise ConfigError(f"EDGED_STATE_DIR={state}: {existing} is not a writable directory")
            probe(existing)
            return f"{path}: not made yet (the first run makes it)"
    except PermissionError:
        raise ConfigError(f"EDGED_STATE_DIR={state}: permission denied: a directory on the way cannot be searched "
                          f"by uid {os.geteuid()}") from None
    probe(state)
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=2.0)
        try:
            depth = db.execute("SELECT count(*) FROM messages").fetchone()[0]
        finally:
            db.close()
    except sqlite3.Error as exc:
        raise OutboxError(f"{path} cannot be read ({exc}); the daemon moves a corrupt one aside at start") from None
    return f"{path}: {depth} events waiting"


def _broker(settings: Settings, timeout_s: float) -> str:
    import sys

    from edged.brokerlink import connect_failure_message, no_connack_message, refusal_message, where
    from edged.errors import BrokerError
    from edged.publisher import build_client, client_id_for

    mqtt = settings.mqtt
    client = build_client(mqtt, client_id_for(mqtt, settings.device_id) + "-check", settings.mqtt_password)
    answered = threading.Event()
    outcome: list[str | None] = []
    limit: list[int | None] = [None]

    def on_connect(client: Any, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        limit[0] = getattr(properties, "MaximumPacketSize", None)
        outcome.append(refusal_message(mqtt, reason) if reason.is_failure else None)
        answered.set()

    def on_connect_fail(client: Any, userdata: Any) -> None:
        outcome.append(connect_failure_message(mqtt, sys.exc_info()[1]))  # run's words (edged/brokerlink.py)
        answered.set()

    def on_disconnect(client: Any, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        if not answered.is_set():  # closed, or silent until the keepalive ran out: no CONNACK
            outcome.append(no_connack_message(mqtt, "keep alive" in str(reason).lower()))
            answered.set()

    client.on_connect, client.on_connect_fail, client.on_disconnect = on_connect, on_connect_fail, on_disconnect
    try:
        client.connect_async(mqtt.host, mqtt.port, keepalive=mqtt.keepalive)
        client.loop_start()
        if not answered.wait(timeout_s):
            raise BrokerError(f"no answer from MQTT broker {where(mqtt)} within {timeout_s:g} s")
        if outcome[0] is not None:
            raise BrokerError(outcome[0])
        client.disconnect()
    except (OSError, ValueError) as exc:
        raise BrokerError(f"cannot connect to MQTT broker {where(mqtt)}: {exc}") from exc
    finally:
        client.loop_stop()
    tls = " over TLS" if mqtt.tls else ""
    if limit[0] is None:
        return f"{where(mqtt)}{tls}, MQTT {mqtt.protocol}"
    sizes = message_sizes(settings)
    kind, largest = max(sizes.items(), key=lambda kv: kv[1])
    if largest > limit[0]:
        raise BrokerError(f"MQTT broker {where(mqtt)} accepts messages of at most {limit[0]} bytes (its Maximum Packet "
                          f"Size), smaller than edged's {kind} ({largest} bytes): such messages would not be sent. "
                          f"Raise the broker's max_packet_size to at least {largest}")
    return f"{where(mqtt)}{tls}, MQTT {mqtt.protocol}, messages up to {limit[0]} bytes (edged's largest: {largest})"


def message_sizes(settings: Settings) -> dict[str, int]:
    """Bytes of edged's largest messages of each kind (edged/brokerlink.py), discovery included when it is on."""
    from edged import __version__
    from edged.brokerlink import message_sizes as sizes
    from edged.discovery import discovery_for

    discovery = discovery_for(settings.homeassistant, settings.mqtt, settings.device_id, "emotions-int8", __version__)
    return sizes(settings.mqtt, settings.device_id, discovery)
