"""systemd's sd_notify protocol: READY, WATCHDOG, STATUS and STOPPING over `$NOTIFY_SOCKET`.

Each message is one datagram of newline-separated `KEY=value` lines sent to the AF_UNIX socket named by
`$NOTIFY_SOCKET` (a leading `@` means the Linux abstract namespace). Outside systemd the variable is unset
and every call does nothing. `$WATCHDOG_USEC` (set by `WatchdogSec=`) is the watchdog timeout; pings are
due at half of it. A failed send is logged once and never raised: the daemon must not die of its supervisor.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping

logger = logging.getLogger(__name__)


class Notifier:
    """Sends sd_notify messages to `socket_path`; a no-op when it is None."""

    def __init__(self, socket_path: str | None = None, watchdog_usec: int | None = None) -> None:
        self.socket_path = socket_path or None
        self.watchdog_usec = watchdog_usec if watchdog_usec and watchdog_usec > 0 else None
        self._sock: socket.socket | None = None
        self._failed = False

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Notifier:
        """From `$NOTIFY_SOCKET` and `$WATCHDOG_USEC` (ignored when `$WATCHDOG_PID` names another process)."""
        env = os.environ if environ is None else environ
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        if not usec.isdigit() or (pid and pid != str(os.getpid())):
            usec = "0"
        return cls(env.get("NOTIFY_SOCKET"), int(usec))

    @property
    def enabled(self) -> bool:
        return self.socket_path is not None

    @property
    def watchdog_interval_s(self) -> float | None:
        """Seconds between two WATCHDOG=1 pings (half of WatchdogSec=), or None when no watchdog is set."""
        if not self.enabled or self.watchdog_usec is None:
            return None
        return self.watchdog_usec / 2_000_000

    def ready(self, status: str | None = None) -> None:
        self.notify("READY=1", *self._status(status))

    def watchdog(self) -> None:
        if self.watchdog_usec is not None:
            self.notify("WATCHDOG=1")

    def status(self, text: str) -> None:
        self.notify(*self._status(text))

    def stopping(self, status: str | None = None) -> None:
        self.notify("STOPPING=1", *self._status(status))

    def notify(self, *lines: str) -> bool:
        """Send one datagram; True if it went out."""
        if self.socket_path is None or not lines:
            return False
        address = "\0" + self.socket_path[1:] if self.socket_path.startswith("@") else self.socket_path
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                self._sock.settimeout(1.0)  # a full receive queue must not stall the frame loop for long
            self._sock.sendto("\n".join(lines).encode(), address)
        except OSError as exc:
            if not self._failed:  # once: a broken socket would otherwise log on every ping
                logger.warning("sd_notify to %s failed: %s", self.socket_path, exc)
                self._failed = True
            return False
        return True

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    @staticmethod
    def _status(text: str | None) -> list[str]:
        return [] if text is None else ["STATUS=" + " ".join(text.split())]  # one line: STATUS= ends at a newline
