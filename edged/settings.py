"""edged's whole configuration, read once from `EDGED_*` environment variables (pydantic-settings).

`EDGED_<FIELD>` sets a top-level field, `EDGED_<SECTION>__<FIELD>` a field of a section, e.g.
`EDGED_MQTT__PORT=8883`. The secrets may also come from files in `$CREDENTIALS_DIRECTORY` (systemd
`LoadCredential=`): `mqtt_password`, `dashboard_token` and `dashboard_password`; a variable that is set wins. An
empty variable means the default.
"""

from __future__ import annotations

import difflib
import ipaddress
import os
import socket
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SecretsSettingsSource,
    SettingsConfigDict,
    SettingsError,
)

from edged.errors import ConfigError
from edged.names import check_client_id, check_host, check_topic, check_topic_level, stock_host_warning
from edged.paths import why_unreadable

PREFIX = "EDGED_"
DELIMITER = "__"
SECRET_FIELDS = frozenset({"mqtt_password"})
# Secrets of a section, also read from $CREDENTIALS_DIRECTORY/<section>_<field> (systemd LoadCredential=).
SECTION_SECRETS = (("dashboard", "token"), ("dashboard", "password"))
MASKED = frozenset({"mqtt_password", "token", "password"})  # never shown in an error message
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
_TOPIC_FORBIDDEN = set("+#/\0")
# Beside every variable that names a file: what the systemd unit's sandbox lets the service read (edged.paths).
SERVICE_FILES = "; the service reads it as an unprivileged user that cannot see /home, /root or /run/user"

# The environment being loaded. A context variable rather than a parameter because pydantic-settings
# builds its sources and default factories without any way to hand them our mapping.
_ENVIRON: ContextVar[Mapping[str, str]] = ContextVar("edged_environ")


def _environ() -> Mapping[str, str]:
    return _ENVIRON.get(os.environ)


def env_name(section: str | None, field: str) -> str:
    """The environment variable of a field: `EDGED_MQTT__PORT` for ("mqtt", "port")."""
    return f"{PREFIX}{section.upper()}{DELIMITER}{field.upper()}" if section else f"{PREFIX}{field.upper()}"


def default_device_id() -> str:
    """The host name with the characters MQTT topics cannot carry replaced by `-`."""
    name = "".join("-" if c in _TOPIC_FORBIDDEN or c.isspace() else c for c in socket.gethostname()).strip("-")
    return name or "edged"


def default_state_dir() -> Path:
    # systemd's StateDirectory= sets $STATE_DIRECTORY (several paths are ':'-separated; the first is ours).
    state = _environ().get("STATE_DIRECTORY", "").split(":")[0]
    return Path(state) if state else Path.home() / ".local" / "state" / "edged"


class _Section(BaseModel):
    # No inf or nan: `EDGED_..._S=inf` would pass `gt=0` and overflow a wait much later, far from its variable.
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    section: ClassVar[str]


class CameraSettings(_Section):
    """Where frames come from."""

    section: ClassVar[str] = "camera"

    source: str = Field(
        "0",
        min_length=1,
        description="V4L2 index or /dev/videoN, `picamera2`, `gst:<GStreamer pipeline ending in appsink>`, "
        "a video file path, or an rtsp:// or http(s):// URL" + SERVICE_FILES.replace("it", "a video file", 1),
    )
    width: int = Field(640, gt=0, le=8192, description="Requested capture width in pixels")
    height: int = Field(480, gt=0, le=8192, description="Requested capture height in pixels")
    fps: float = Field(30, gt=0, le=240, description="Requested capture frame rate (frames per second)")
    realtime: bool = Field(
        True, description="Play video files at their own frame rate; false processes them as fast as possible"
    )
    queue_size: int = Field(
        2, ge=1, le=8, description="Frames buffered between capture and processing (1-8); the oldest is dropped"
    )
    reopen_backoff_max_s: float = Field(
        30, gt=0, le=3600, description="Longest wait between attempts to reopen a lost camera (seconds, up to 3600)"
    )


class DetectorSettings(_Section):
    """Haar cascade face detection."""

    section: ClassVar[str] = "detector"

    cascade: Path | None = Field(
        None,
        description="Haar cascade XML; empty searches cv2.data.haarcascades, then /usr/share/opencv4/haarcascades"
        + SERVICE_FILES,
    )
    downscale: float = Field(
        0.5, gt=0, le=1, description="Factor (0-1] the frame is resized by before detection; smaller is faster"
    )
    scale_factor: float = Field(1.2, gt=1, le=2, description="Haar pyramid step between scales (>1)")
    min_neighbors: int = Field(
        5, ge=0, description="Neighbouring detections a face needs; higher means fewer false faces"
    )
    min_face: int = Field(48, ge=8, description="Smallest face side to report, in frame pixels")
    threads: int = Field(1, ge=1, le=64, description="OpenCV worker threads (process-wide)")
    full_scan_every: int = Field(
        15, ge=1, le=1000,
        description="Frames between full-frame scans; in between only regions around known faces are searched "
        "(a new face is found within this many frames; 1 = a full scan every frame)",
    )
    region_margin: float = Field(
        0.5, gt=0, le=2, description="How far around a known face to search between full scans, in face sides"
    )


class ModelSettings(_Section):
    """The int8 TFLite emotion classifier."""

    section: ClassVar[str] = "model"

    path: Path | None = Field(
        None, description="Emotion model .tflite (its sidecar .json beside it); empty uses the one bundled in the package, "
        "edged/models/emotions-int8.tflite (`edged config` shows where)" + SERVICE_FILES
    )
    threads: int = Field(1, ge=1, le=64, description="TFLite interpreter threads")
    batch: int = Field(8, ge=1, le=64, description="Most faces classified in one invoke")
    runtime: Literal["auto", "ai-edge-litert", "tflite-runtime"] = Field(
        "auto",
        description="TFLite runtime: auto prefers ai-edge-litert (XNNPACK int8 kernels, ~16x faster than "
        "tflite-runtime 2.14 here) and falls back to tflite-runtime",
    )
    xnnpack: bool = Field(
        True, description="Run the model on XNNPACK's kernels (4.5x faster here); false uses the builtin kernels"
    )


class TrackerSettings(_Section):
    """Following faces across frames and smoothing their emotions."""

    section: ClassVar[str] = "tracker"

    iou_threshold: float = Field(
        0.3, gt=0, lt=1, description="Least box overlap (IoU, 0-1) for a detection to continue a track"
    )
    max_missing_s: float = Field(1.0, gt=0, le=3600, description="A track unseen for this long has left (seconds)")
    smoothing: float = Field(
        0.3, gt=0, le=1, description="Weight (0-1] of the newest scores in the moving average; 1 = no smoothing"
    )
    min_hits: int = Field(2, ge=1, description="Detections a track needs before face_appeared is published")
    change_margin: float = Field(
        0.1, ge=0, lt=1, description="How much a new emotion must beat the current one before emotion_changed"
    )
    min_change_s: float = Field(
        1.0, ge=0, le=60, description="How long a new emotion must lead (and beat the current one by change_margin) "
        "before emotion_changed (seconds; 0 = at once)"
    )


class MqttSettings(_Section):
    """The broker and the topics edged publishes on."""

    section: ClassVar[str] = "mqtt"

    host: str = Field("localhost", min_length=1, description="Broker host name or address")
    port: int = Field(1883, ge=1, le=65535, description="Broker port (1883 plain, 8883 usually TLS)")
    protocol: Literal["5", "3.1.1"] = Field("5", description="MQTT protocol version: 5 or 3.1.1")
    client_id: str | None = Field(
        None, min_length=1, description="Client id, unique per device; empty uses edged-<device id>"
    )
    username: str | None = Field(None, min_length=1, description="User name for the broker; empty connects anonymously")
    keepalive: int = Field(30, ge=5, le=65535, description="Keepalive interval (seconds)")
    tls: bool = Field(False, description="Connect with TLS")
    ca_file: Path | None = Field(
        None, description="CA bundle (PEM) to trust; empty uses the system CA store" + SERVICE_FILES)
    cert_file: Path | None = Field(
        None, description="Client certificate (PEM) for mutual TLS; needs key_file" + SERVICE_FILES)
    key_file: Path | None = Field(None, description="Private key (PEM) of the client certificate" + SERVICE_FILES)
    tls_insecure: bool = Field(False, description="Skip the broker host name check (testing only)")
    topic_prefix: str = Field("edged", description="First topic level: <prefix>/<device>/{status,events,state,stats}")
    state_interval_s: float = Field(
        0.5, ge=0, le=3600, description="Least time between two state messages when the faces stay the same (seconds)"
    )
    stats_interval_s: float = Field(10, gt=0, le=3600, description="Time between two stats messages (seconds)")
    reconnect_min_s: float = Field(1, gt=0, le=3600, description="First wait before reconnecting to the broker (seconds)")
    reconnect_max_s: float = Field(60, gt=0, le=3600, description="Longest wait between reconnect attempts (seconds)")

    @field_validator("topic_prefix")
    @classmethod
    def _prefix_is_one_level(cls, value: str) -> str:
        return check_topic_level(value.strip())  # the rules of every MQTT name: edged/names.py

    @field_validator("host")
    @classmethod
    def _host_is_a_host(cls, value: str) -> str:
        return check_host(value)

    @field_validator("client_id")
    @classmethod
    def _client_id_is_valid(cls, value: str | None) -> str | None:
        return None if value is None else check_client_id(value)

    @model_validator(mode="after")
    def _consistent(self) -> MqttSettings:
        def var(field: str) -> str:
            return env_name(self.section, field)

        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError(f"{var('cert_file')} and {var('key_file')} must be set together")
        for name in ("ca_file", "cert_file", "key_file"):
            path = getattr(self, name)
            if path is not None and not self.tls:
                raise ValueError(f"{var(name)} is set but {var('tls')} is not true")
            reason = None if path is None else why_unreadable(path)
            if reason is not None:
                raise ValueError(f"{var(name)}={path}: {reason}")
        if self.tls_insecure and not self.tls:
            raise ValueError(f"{var('tls_insecure')} is set but {var('tls')} is not true")
        if self.reconnect_max_s < self.reconnect_min_s:
            raise ValueError(f"{var('reconnect_max_s')} must be at least {var('reconnect_min_s')}")
        return self


class HomeAssistantSettings(_Section):
    """Home Assistant MQTT discovery (docs/homeassistant.md)."""

    section: ClassVar[str] = "homeassistant"

    enabled: bool = Field(
        False, description="Publish retained Home Assistant discovery configs, so the kiosk appears as a device"
    )
    discovery_prefix: str = Field("homeassistant", description="Home Assistant's MQTT discovery prefix")
    status_topic: str = Field(
        "homeassistant/status", description="Where Home Assistant announces `online`; discovery is then sent again"
    )

    @field_validator("discovery_prefix", "status_topic")
    @classmethod
    def _is_a_topic(cls, value: str) -> str:
        return check_topic(value)

class OutboxSettings(_Section):
    """The on-disk spool of QoS 1 events (<state dir>/outbox.sqlite3): kept until the broker acknowledges them."""

    section: ClassVar[str] = "outbox"

    max_messages: int = Field(
        100_000, ge=10, description="Most events kept in the spool; beyond it the oldest are dropped (a seq gap)"
    )
    max_mb: float = Field(
        50, gt=0, le=100_000, description="Most megabytes of event payloads kept in the spool; beyond it the oldest are dropped"
    )
    max_age_s: float = Field(
        86_400, gt=0, le=2_592_000,
        description="Events older than this are dropped instead of sent late (seconds; default one day, at most 30 days)"
    )
    inflight: int = Field(
        20, ge=1, le=1000, description="Spooled events handed to the MQTT client at once, awaiting acknowledgement"
    )
    flush_timeout_s: float = Field(
        5, ge=0, le=10, description="On shutdown, longest wait for the broker to acknowledge pending events (seconds, 0-10)"
    )


class DashboardSettings(_Section):
    """`edged dashboard`, the central web dashboard (docs/dashboard.md); the kiosk daemon ignores these."""

    section: ClassVar[str] = "dashboard"

    host: str = Field("127.0.0.1", min_length=1, description="Address the dashboard listens on; any other than a "
                      "loopback address needs token or username and password")
    port: int = Field(8080, ge=1, le=65535, description="TCP port of the dashboard")
    token: SecretStr | None = Field(
        None, min_length=16, description="Access token (16 characters or more, printable ASCII): `Authorization: "
        "Bearer <token>`, or open /?token=<token> once in a browser (it sets a cookie); also read from the file "
        "dashboard_token in $CREDENTIALS_DIRECTORY (systemd)")
    cookie_days: float = Field(30, gt=0, le=400, description="A browser logged in with /?token= stays logged in "
                               "this many days after its last visit (the cookie's Max-Age, renewed on every request; "
                               "browsers keep a cookie 400 days at most)")
    username: str | None = Field(None, min_length=1, description="HTTP basic auth user name (no ':'); needs password")
    password: SecretStr | None = Field(None, min_length=8, description="HTTP basic auth password (8 characters or "
                                       "more); also read from the file dashboard_password in $CREDENTIALS_DIRECTORY")
    database: Path | None = Field(
        None, description="SQLite file of the per-minute history; empty uses dashboard.sqlite3 in EDGED_STATE_DIR")
    retention_days: float = Field(7, gt=0, le=3650, description="Days of per-minute history kept (older is pruned)")
    stale_s: float = Field(60, gt=0, le=86_400, description="An online kiosk with nothing newer for this long is "
                           "shown stale (seconds)")
    window_s: float = Field(300, gt=0, le=86_400, description="The overview's emotion mix covers the events of this "
                            "many seconds")
    push_interval_s: float = Field(0.5, ge=0.05, le=60, description="Time between two live updates pushed to the "
                                   "pages (seconds)")

    @field_validator("host")
    @classmethod
    def _host_is_a_host(cls, value: str) -> str:
        return check_host(value)

    @field_validator("token")
    @classmethod
    def _token_fits_a_header(cls, value: SecretStr | None) -> SecretStr | None:
        # It travels in an Authorization header, a query string and a cookie: other characters would never match.
        if value is not None and not all("!" <= c <= "~" for c in value.get_secret_value()):
            raise ValueError("must be printable ASCII without spaces (e.g. `openssl rand -hex 24`)")
        return value

    @field_validator("username")
    @classmethod
    def _username_has_no_colon(cls, value: str | None) -> str | None:
        if value is not None and ":" in value:
            raise ValueError("must not contain ':' (HTTP basic auth sends user:password)")
        return value

    @property
    def loopback(self) -> bool:
        """Whether `host` is reachable from this machine only."""
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:  # a host name: it may resolve to anything
            return False

    @model_validator(mode="after")
    def _auth_off_loopback(self) -> DashboardSettings:
        def var(field: str) -> str:
            return env_name(self.section, field)

        if (self.username is None) != (self.password is None):
            raise ValueError(f"{var('username')} and {var('password')} must be set together")
        if not self.loopback and self.token is None and self.username is None:
            raise ValueError(f"{var('host')}={self.host} listens beyond this machine: set {var('token')}, or "
                             f"{var('username')} and {var('password')}, or listen on 127.0.0.1")
        return self


class _EnvSource(EnvSettingsSource):
    """Environment variables from the mapping `load_settings` was given instead of `os.environ`."""

    def _load_env_vars(self) -> Mapping[str, str | None]:
        env = {k: v for k, v in _environ().items() if not (self.env_ignore_empty and v == "")}
        return {k if self.case_sensitive else k.lower(): v for k, v in env.items()}


class _CredentialsSource(SecretsSettingsSource):
    """Reads only the secret fields from `$CREDENTIALS_DIRECTORY`: a top-level one by its bare name
    (`mqtt_password`), a section's as `<section>_<field>` (`dashboard_token`)."""

    def _credential(self, name: str, variable: str) -> str | None:
        path = Path(str(self.secrets_dir)) / name
        reason = why_unreadable(path)
        if reason is not None and reason.startswith("no such file"):  # absent: no credential, the variable rules
            return None
        if reason is not None:
            raise ConfigError(f"$CREDENTIALS_DIRECTORY/{name}={path} (systemd LoadCredential=, or {variable}): {reason}")
        # An empty file means unset, like an empty variable: the installer leaves one for LoadCredential=,
        # which fails the service (243/CREDENTIALS) when its source file is missing.
        return path.read_text().strip() or None

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        if field_name not in SECRET_FIELDS:
            return None, field_name, False
        return self._credential(field_name, env_name(None, field_name)), field_name, False

    def __call__(self) -> dict[str, Any]:
        values = super().__call__()
        if self.secrets_dir is None:
            return values
        # pydantic-settings reads secret files into top-level fields only; a section's secrets are read here.
        for section, name in SECTION_SECRETS:
            value = self._credential(f"{section}_{name}", env_name(section, name))
            if value is not None:
                values.setdefault(section, {})[name] = value
        return values


class Settings(BaseSettings):
    """Everything edged is configured with."""

    model_config = SettingsConfigDict(
        env_prefix=PREFIX, env_nested_delimiter=DELIMITER, env_ignore_empty=True, extra="forbid", allow_inf_nan=False
    )

    device_id: str = Field(
        default_factory=default_device_id,
        description="Device id, the second topic level; default: the host name without + # / and spaces",
    )
    log_level: str = Field("INFO", description="Logging level: DEBUG, INFO, WARNING, ERROR or CRITICAL")
    state_dir: Path = Field(
        default_factory=default_state_dir,
        description="Directory for edged's state; default: $STATE_DIRECTORY, else ~/.local/state/edged",
    )
    mqtt_password: SecretStr | None = Field(
        None,
        description="Broker password; also read from the file mqtt_password in $CREDENTIALS_DIRECTORY (systemd)",
    )
    camera: CameraSettings = Field(default_factory=CameraSettings, description=CameraSettings.__doc__)
    detector: DetectorSettings = Field(default_factory=DetectorSettings, description=DetectorSettings.__doc__)
    model: ModelSettings = Field(default_factory=ModelSettings, description=ModelSettings.__doc__)
    tracker: TrackerSettings = Field(default_factory=TrackerSettings, description=TrackerSettings.__doc__)
    mqtt: MqttSettings = Field(default_factory=MqttSettings, description=MqttSettings.__doc__)
    homeassistant: HomeAssistantSettings = Field(
        default_factory=HomeAssistantSettings, description=HomeAssistantSettings.__doc__
    )
    outbox: OutboxSettings = Field(default_factory=OutboxSettings, description=OutboxSettings.__doc__)
    dashboard: DashboardSettings = Field(default_factory=DashboardSettings, description=DashboardSettings.__doc__)

    @field_validator("device_id")
    @classmethod
    def _device_is_one_level(cls, value: str) -> str:
        return check_topic_level(value)

    @property
    def stock_device_id_warning(self) -> str | None:
        """A warning when the device id defaulted to a stock image's host name (edged/names.py)."""
        from_host = "device_id" not in self.model_fields_set
        return stock_host_warning(self.device_id, from_host, self.mqtt.client_id is not None)

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        if value.upper() not in LOG_LEVELS:
            raise ValueError(f"must be one of {', '.join(LOG_LEVELS)}, got {value!r}")
        return value.upper()

    @field_validator("state_dir")
    @classmethod
    def _expand(cls, value: Path) -> Path:
        return value.expanduser()

    @model_validator(mode="after")
    def _username_for_password(self) -> Settings:
        if self.mqtt_password is not None and self.mqtt.username is None:
            raise ValueError(f"{env_name(None, 'mqtt_password')} is set but {env_name('mqtt', 'username')} is not")
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # No .env file: systemd's EnvironmentFile= is the one place an operator writes variables.
        credentials = _environ().get("CREDENTIALS_DIRECTORY") or None
        return (
            init_settings,
            _EnvSource(settings_cls),
            _CredentialsSource(settings_cls, secrets_dir=credentials, env_prefix=""),
        )


def _sections() -> dict[str, type[_Section]]:
    return {
        name: field.annotation
        for name, field in Settings.model_fields.items()
        if isinstance(field.annotation, type) and issubclass(field.annotation, _Section)
    }


def _fields() -> Iterator[tuple[str | None, str, FieldInfo]]:
    """(section or None, field name, field) for every leaf setting, in declaration order."""
    sections = _sections()
    for name, field in Settings.model_fields.items():
        if name in sections:
            for sub, subfield in sections[name].model_fields.items():
                yield name, sub, subfield
        else:
            yield None, name, field


def known_variables() -> list[str]:
    """Every EDGED_* variable the model reads."""
    return [env_name(section, name) for section, name, _ in _fields()]


def _check_unknown(environ: Mapping[str, str]) -> None:
    known = set(known_variables())
    unknown = sorted(k for k in environ if k.upper().startswith(PREFIX) and k.upper() not in known)
    if not unknown:
        return
    lines = []
    for name in unknown:
        close = difflib.get_close_matches(name.upper(), known, n=1, cutoff=0.6)
        hint = f" (did you mean {close[0]}?)" if close else ""
        lines.append(f"{name}: unknown variable{hint}")
    raise ConfigError("\n".join(lines))


def _describe_error(error: Mapping[str, Any]) -> str:
    loc = [str(part) for part in error["loc"]]
    message = str(error["msg"]).removeprefix("Value error, ")
    section_fields = _sections()
    if len(loc) == 1 and loc[0] in section_fields and error["type"] == "value_error":
        return message  # a cross-field rule: the message names the variables itself
    if not loc:
        return message
    var = env_name(loc[0], loc[1]) if loc[0] in section_fields and len(loc) > 1 else env_name(None, loc[0])
    credential = "_".join(loc[:2]) if loc[0] in section_fields else loc[0]
    if var not in _environ() and (tuple(loc[:2]) in SECTION_SECRETS or credential in SECRET_FIELDS):
        directory = _environ().get("CREDENTIALS_DIRECTORY")
        if directory and (Path(directory) / credential).is_file():  # the value came from the file, not the variable
            var += f" (from $CREDENTIALS_DIRECTORY/{credential})"
    if error["type"].endswith(("_parsing", "_type")):
        message = message.split(",")[0]  # "Input should be a valid integer", without pydantic's elaboration
    if error["type"] in ("too_short", "string_too_short") and "min_length" in error.get("ctx", {}):
        # pydantic's words for a SecretStr are about "items after validation"; the length of a secret is not shown
        least = error["ctx"]["min_length"]
        return f"{var}: too short: must be at least {least} character{'s' if least != 1 else ''}"
    shown = error.get("input")
    if isinstance(shown, str | int | float) and not isinstance(shown, bool) and error["type"] != "value_error":
        shown = "**********" if MASKED & set(loc) else shown
        return f"{var}: {message}, got {shown!r}"
    return f"{var}: {message}"


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Read the settings from `environ` (default: os.environ); raise ConfigError naming the variable at fault."""
    env = dict(os.environ if environ is None else environ)
    _check_unknown(env)
    token = _ENVIRON.set(env)
    try:
        return Settings()
    except ValidationError as exc:
        raise ConfigError("\n".join(_describe_error(e) for e in exc.errors())) from None
    except SettingsError as exc:
        if isinstance(exc.__cause__, ConfigError):  # ours, from a source: it names the file and the reason
            raise exc.__cause__ from None
        raise ConfigError(str(exc)) from None
    finally:
        _ENVIRON.reset(token)


def _format(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, SecretStr):
        return "**********"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def describe(settings: Settings) -> list[tuple[str, str, str]]:
    """(variable, effective value with secrets masked, description) for every setting, for `edged config`."""
    rows = []
    for section, name, field in _fields():
        owner = getattr(settings, section) if section else settings
        rows.append((env_name(section, name), _format(getattr(owner, name)), field.description or ""))
    return rows


def render_env_file() -> str:
    """Every variable with its default and description, commented out, as a systemd EnvironmentFile."""
    lines = [
        "# edged configuration (systemd EnvironmentFile=), generated by `python -m edged.settings`: do not edit.",
        "# Every variable is optional: uncomment a line to change it. An empty value means the default.",
    ]
    previous: str | None = "-"
    for section, name, field in _fields():
        if section != previous:
            title = _sections()[section].__doc__ if section else "General."
            lines += ["", f"# == {title.strip().rstrip('.')} =="]
            previous = section
        default = "" if field.default_factory is not None else _format(field.default)
        lines += [f"# {field.description}", f"#{env_name(section, name)}={default}"]
    return "\n".join(lines) + "\n"


def render_markdown_table() -> str:
    """The README's configuration table: every variable, its default and its description."""
    lines = ["| Variable | Default | Meaning |", "|---|---|---|"]
    for section, name, field in _fields():
        default = "(computed)" if field.default_factory is not None else _format(field.default) or "(unset)"
        lines.append(f"| `{env_name(section, name)}` | `{default}` | {field.description} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    import sys

    print(render_markdown_table() if "--markdown" in sys.argv else render_env_file(), end="")
