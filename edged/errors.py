"""Errors edged reports; third-party exceptions are converted to these at the boundary.

EdgedError
 +-- ConfigError        a setting is wrong (names the EDGED_* variable); `edged run` exits 78
 +-- ModelError         the .tflite model or its sidecar is missing, corrupt or has the wrong shape
 +-- CascadeError       the Haar cascade file is missing or loads empty
 +-- CameraError        the frame source cannot be opened or stopped delivering frames
 +-- BrokerError        the MQTT broker refused us or cannot be reached (bad credentials, TLS failure)
 +-- OutboxError        the event spool in EDGED_STATE_DIR cannot be written (disk full, I/O error)
 +-- ListenError        `edged dashboard` cannot listen on its address (in use, not permitted) or open its history
                        (the disk refuses, another dashboard holds it)

A state directory that cannot be a directory at all (a file in the way, no permission) is a ConfigError, and so is
any configured file this process cannot read (edged.paths: missing, a directory, permission denied, hidden by the
systemd unit's sandbox), named by its variable.
"""


class EdgedError(Exception):
    """Base class of every error edged reports to the operator."""


class ConfigError(EdgedError):
    """A configuration value is missing or invalid; the message names the environment variable."""


class ModelError(EdgedError):
    """The emotion model cannot be loaded or does not fit the expected contract."""


class CascadeError(EdgedError):
    """The Haar cascade cannot be found or is empty."""


class CameraError(EdgedError):
    """The camera, stream or video file cannot be opened or read."""


class BrokerError(EdgedError):
    """The MQTT broker cannot be reached or refused the connection."""


class OutboxError(EdgedError):
    """The on-disk event spool cannot be opened or written; the message names the file."""


class ListenError(EdgedError):
    """The dashboard cannot listen on its address or open its history database; the message names which."""
