"""`edged check`: is this installation ready to run? One (item, passed, detail, configuration) per component.

`configuration` marks a failure that a restart cannot fix (a variable, a file edged cannot read, the model or the
cascade): `edged check` then exits 78, as `edged run` would; other failures (camera, broker, outbox) exit 1.

The broker check connects with its own client id (`<client id>-check`) and publishes nothing, so it
neither kicks a running daemon off the broker nor flips the device's retained status.
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
    ok: bool
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
    yield Check("config", True, f"device {settings.device_id}")
    yield _guard("cascade", _cascade, settings)
    yield _guard("model", _model, settings)
    yield _guard("camera", _camera, settings)
    yield _guard("outbox", _outbox, settings)
    if broker_timeout_s is not None:
        yield _guard("broker", _broker, settings, broker_timeout_s)


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
    from edged.outbox import FILE_NAME

    state = settings.state_dir
    path = state / FILE_NAME
    try:
        if not path.exists():
            existing = next(p for p in (state, *state.parents) if p.exists())
            if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
                raise ConfigError(f"EDGED_STATE_DIR={state}: {existing} is not a writable directory")
            return f"{path}: not made yet (the first run makes it)"
    except PermissionError:
        raise ConfigError(f"EDGED_STATE_DIR={state}: permission denied: a directory on the way cannot be searched "
                          f"by uid {os.geteuid()}") from None
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
    from edged.errors import BrokerError
    from edged.publisher import build_client, client_id_for, refusal_message

    mqtt = settings.mqtt
    client = build_client(mqtt, client_id_for(mqtt, settings.device_id) + "-check", settings.mqtt_password)
    answered = threading.Event()
    outcome: list[str | None] = []

    def on_connect(client: Any, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        outcome.append(refusal_message(mqtt, reason) if reason.is_failure else None)
        answered.set()

    def on_connect_fail(client: Any, userdata: Any) -> None:
        outcome.append(f"cannot reach MQTT broker {mqtt.host}:{mqtt.port}")
        answered.set()

    client.on_connect, client.on_connect_fail = on_connect, on_connect_fail
    try:
        client.connect_async(mqtt.host, mqtt.port, keepalive=mqtt.keepalive)
        client.loop_start()
        if not answered.wait(timeout_s):
            raise BrokerError(f"no answer from MQTT broker {mqtt.host}:{mqtt.port} within {timeout_s:g} s")
        if outcome[0] is not None:
            raise BrokerError(outcome[0])
        client.disconnect()
    except (OSError, ValueError) as exc:
        raise BrokerError(f"cannot connect to MQTT broker {mqtt.host}:{mqtt.port}: {exc}") from exc
    finally:
        client.loop_stop()
    tls = " over TLS" if mqtt.tls else ""
    return f"{mqtt.host}:{mqtt.port}{tls}, MQTT {mqtt.protocol}"
