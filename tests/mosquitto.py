"""A real Mosquitto broker on a free local port, and a recording MQTT subscriber, for tests."""

from __future__ import annotations

import contextlib
import getpass
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

T = TypeVar("T")
MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"

# The accounts of the password-protected test broker (`auth_broker` fixture).
USERS = {"edged": "s3cret-pass", "watcher": "watch-pass"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(predicate: Callable[[], T], timeout: float = 5.0, what: str = "condition") -> T:
    """Poll `predicate` until it returns something truthy; fail the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    pause = threading.Event()
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        pause.wait(0.02)


@dataclass(frozen=True)
class Pki:
    """A CA made for a test, a server certificate for 127.0.0.1 it signed, and a second CA that signed nothing."""

    ca: Path
    other_ca: Path
    server_cert: Path
    server_key: Path


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=30)


def make_pki(folder: Path) -> Pki:
    """Short-lived EC keys and certificates in `folder` (created), made with the openssl command."""
    folder.mkdir(parents=True, exist_ok=True)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    for ca in ("ca", "other-ca"):
        _openssl("req", "-x509", *ec, "-keyout", f"{ca}.key", "-out", f"{ca}.pem", "-days", "2", "-subj",
                 f"/CN=edged test {ca}", cwd=folder)
    _openssl("req", *ec, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1", cwd=folder)
    (folder / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    _openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
             "-out", "server.pem", "-days", "2", "-extfile", "san.ext", cwd=folder)
    return Pki(folder / "ca.pem", folder / "other-ca.pem", folder / "server.pem", folder / "server.key")


class Mosquitto:
    """`mosquitto` on 127.0.0.1:<free port>; anonymous unless `users` (name -> password) are given.

    persistent: sessions and queued messages are saved on stop and restored on the next `start()` (same port),
    so a subscriber with a persistent session misses nothing across a broker restart.
    tls: (certificate, key) PEM files: the listener speaks TLS only.
    extra: more configuration lines, e.g. `max_packet_size 300`.
    log: write everything to workdir/mosquitto.log (off for benchmarks: logging every PUBLISH measures the log file).
    The benchmarks in bench/ start their brokers with this class too.
    """

    def __init__(self, workdir: Path, users: Mapping[str, str] | None = None, *, persistent: bool = False,
                 tls: tuple[Path, Path] | None = None, extra: tuple[str, ...] = (), log: bool = True,
                 port: int | None = None) -> None:
        self.workdir = workdir
        self.extra = extra
        self.users = dict(users or {})
        self.persistent = persistent
        self.tls = tls
        self.logging = log
        self.port = port or free_port()
        self.log_path = workdir / "mosquitto.log"
        self._process: subprocess.Popen[bytes] | None = None

    def _write_config(self) -> Path:
        self.workdir.mkdir(parents=True, exist_ok=True)
        lines = [
            f"listener {self.port} 127.0.0.1",
            # Run as whoever runs the tests: as root, mosquitto would switch to a user that cannot read tmp files.
            f"user {getpass.getuser()}",
            *(["persistence true", f"persistence_location {self.workdir}/", "max_queued_messages 0"]
              if self.persistent else ["persistence false"]),
            *([f"certfile {self.tls[0]}", f"keyfile {self.tls[1]}"] if self.tls else []),
            *([f"log_dest file {self.log_path}", "log_type all"] if self.logging else ["log_dest none"]),
            *self.extra,
        ]
        if self.users:
            passwords = self.workdir / "passwd"
            passwords.unlink(missing_ok=True)
            for i, (name, password) in enumerate(self.users.items()):
                create = ["-c"] if i == 0 else []
                subprocess.run(["mosquitto_passwd", *create, "-b", str(passwords), name, password], check=True)
            lines += ["allow_anonymous false", f"password_file {passwords}"]
        else:
            lines.append("allow_anonymous true")
        config = self.workdir / "mosquitto.conf"
        config.write_text("\n".join(lines) + "\n")
        return config

    def start(self, timeout: float = 5.0) -> Mosquitto:
        """Start the broker and wait until it accepts TCP connections."""
        config = self._write_config()
        self._process = subprocess.Popen([MOSQUITTO, "-c", str(config)], stderr=subprocess.PIPE)
        deadline = time.monotonic() + timeout
        while True:
            if self._process.poll() is not None:
                raise RuntimeError(f"mosquitto exited with {self._process.returncode}: {self.log()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return self
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"mosquitto did not listen on {self.port} within {timeout} s") from None
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self._process.wait(0.02)

    @property
    def pid(self) -> int | None:
        """The broker's process id while it runs."""
        return None if self._process is None else self._process.pid

    def stop(self) -> None:
        if self._process is None:
            return
        self._process.terminate()
        try:
            self._process.wait(5)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        if self._process.stderr:
            self._process.stderr.close()
        self._process = None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def __enter__(self) -> Mosquitto:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@dataclass(frozen=True)
class Message:
    topic: str
    payload: bytes
    retain: bool
    qos: int

    @property
    def text(self) -> str:
        return self.payload.decode()


class Subscriber:
    """A paho client that records every message matching `topic`; subscribed when the constructor returns."""

    def __init__(
        self,
        port: int,
        topic: str = "#",
        username: str | None = None,
        password: str | None = None,
        timeout: float = 5.0,
    ) -> None:
        self.messages: list[Message] = []
        self._changed = threading.Condition()
        self._subscribed = threading.Event()
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"test-sub-{id(self):x}")
        if username:
            self.client.username_pw_set(username, password)
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe(topic, qos=1)
        self.client.on_subscribe = lambda c, u, mid, rcs, p: self._subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        if not self._subscribed.wait(timeout):
            self.close()
            raise AssertionError(f"could not subscribe to {topic} on port {port}")

    def _on_message(self, client: paho.Client, userdata: object, msg: paho.MQTTMessage) -> None:
        with self._changed:
            self.messages.append(Message(msg.topic, bytes(msg.payload), bool(msg.retain), msg.qos))
            self._changed.notify_all()

    def on(self, topic: str) -> list[Message]:
        with self._changed:
            return [m for m in self.messages if m.topic == topic]

    def wait_for(self, predicate: Callable[[list[Message]], T], timeout: float = 5.0, what: str = "messages") -> T:
        """Wait until `predicate(messages)` is truthy and return its value."""
        with self._changed:
            result = self._changed.wait_for(lambda: predicate(list(self.messages)), timeout)
            if not result:
                seen = "\n".join(f"  {m.topic} {m.payload[:120]!r}" for m in self.messages)
                raise AssertionError(f"timed out after {timeout} s waiting for {what}; got:\n{seen}")
            return result

    def wait_count(self, topic: str, n: int, timeout: float = 5.0) -> list[Message]:
        """Wait for at least `n` messages on `topic`; returns them."""

        def enough(messages: list[Message]) -> list[Message] | None:
            matching = [m for m in messages if m.topic == topic]
            return matching if len(matching) >= n else None

        return self.wait_for(enough, timeout, f"{n} messages on {topic}")

    def publish(self, topic: str, payload: str | bytes, retain: bool = False) -> None:
        self.client.publish(topic, payload, qos=1, retain=retain).wait_for_publish(5)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
