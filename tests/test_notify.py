"""systemd's notify protocol against a real AF_UNIX datagram socket standing in for the service manager."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import uuid
from pathlib import Path

from media import ROOT, SAMPLE_CLIP, require_model
from mosquitto import wait_until

from edged.notify import Notifier


class Manager:
    """Binds a datagram socket like systemd's and records every message (one list of lines each)."""

    def __init__(self, address: str | Path) -> None:
        self.address = str(address)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind("\0" + self.address[1:] if self.address.startswith("@") else self.address)
        self.sock.settimeout(0.1)
        self.messages: list[list[str]] = []
        self._lock = threading.Lock()
        self._closed = threading.Event()
        # systemd reads at once; a reader thread keeps the small datagram queue (net.unix.max_dgram_qlen) from filling
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._closed.is_set():
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            with self._lock:
                self.messages.append(data.decode().split("\n"))

    def kinds(self) -> list[str]:
        """The first key of every message, in order of arrival (READY, WATCHDOG, STATUS, STOPPING)."""
        with self._lock:
            return [lines[0].split("=", 1)[0] for lines in self.messages]

    def statuses(self) -> list[str]:
        with self._lock:
            return [line[len("STATUS="):] for lines in self.messages for line in lines if line.startswith("STATUS=")]

    def close(self) -> None:
        self._closed.set()
        self._thread.join()
        self.sock.close()


def test_outside_systemd_every_call_is_a_no_op():
    notifier = Notifier.from_env({})
    assert not notifier.enabled and notifier.watchdog_interval_s is None
    notifier.ready("up")
    notifier.watchdog()
    notifier.status("fine")
    notifier.stopping()
    assert notifier.notify("READY=1") is False


def test_messages_reach_an_abstract_socket_with_the_watchdog_at_half_its_timeout():
    manager = Manager(f"@edged-test-{uuid.uuid4().hex}")
    try:
        notifier = Notifier.from_env({"NOTIFY_SOCKET": manager.address, "WATCHDOG_USEC": "30000000"})
        assert notifier.watchdog_interval_s == 15.0
        notifier.ready("starting\nup")
        notifier.watchdog()
        notifier.stopping()
        wait_until(lambda: len(manager.kinds()) == 3, what="three messages")
        notifier.close()
    finally:
        manager.close()
    assert manager.messages == [["READY=1", "STATUS=starting up"], ["WATCHDOG=1"], ["STOPPING=1"]]


def test_no_watchdog_pings_for_another_process_or_without_watchdog_usec(tmp_path):
    other = Notifier.from_env({"NOTIFY_SOCKET": str(tmp_path / "n"), "WATCHDOG_USEC": "1000000", "WATCHDOG_PID": "1"})
    unset = Notifier.from_env({"NOTIFY_SOCKET": str(tmp_path / "n")})
    assert other.enabled and other.watchdog_interval_s is None and unset.watchdog_interval_s is None


def test_a_missing_socket_is_logged_not_raised(tmp_path, caplog):
    notifier = Notifier(str(tmp_path / "absent"))
    assert notifier.notify("READY=1") is False and notifier.notify("READY=1") is False
    assert len([r for r in caplog.records if "sd_notify" in r.message]) == 1  # once, not per ping


def test_edged_run_notifies_ready_watchdog_status_stopping_in_order(broker, tmp_path):
    model = require_model()
    manager = Manager(tmp_path / "notify")
    clean = {k: v for k, v in os.environ.items() if not k.upper().startswith(("EDGED_", "WATCHDOG_", "NOTIFY_"))}
    env = {**clean, "NOTIFY_SOCKET": manager.address, "WATCHDOG_USEC": "200000",  # a ping every 0.1 s
           "EDGED_MODEL__PATH": str(model), "EDGED_CAMERA__SOURCE": str(SAMPLE_CLIP), "EDGED_CAMERA__REALTIME": "false",
           "EDGED_MQTT__HOST": "127.0.0.1", "EDGED_MQTT__PORT": str(broker.port), "EDGED_DEVICE_ID": "notify"}
    try:
        result = subprocess.run([sys.executable, "-m", "edged", "run"], env=env, cwd=ROOT, capture_output=True,
                                text=True, timeout=120)
        assert result.returncode == 0, result.stderr
        wait_until(lambda: "STOPPING" in manager.kinds(), what="STOPPING=1")
    finally:
        manager.close()
    keys = manager.kinds()
    assert keys[0] == "READY" and keys[-1] == "STOPPING" and keys.count("READY") == keys.count("STOPPING") == 1
    assert "WATCHDOG" in keys  # 180 frames processed: pinged while they flowed
    statuses = manager.statuses()
    assert " fps, " in statuses[0] and "broker " in statuses[0] and statuses[-1] == "stopping after 180 frames"


class SilentPublisher:
    connected = True
    backlog = 0

    def start(self) -> None: ...
    def event(self, event) -> None: ...
    def state(self, tracks, ts_utc) -> None: ...
    def stats(self, stats) -> None: ...
    def close(self, timeout: float = 5.0) -> None: ...
