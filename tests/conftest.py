"""Shared fixtures: real Mosquitto brokers on free ports (see tests/mosquitto.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from mosquitto import USERS, Mosquitto, make_pki


@pytest.fixture(autouse=True)
def private_state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test's daemons keep their outbox in the test's own directory, never in ~/.local/state/edged
    (a spool left by one test would be replayed by the next). Set like systemd does, so subprocesses inherit it."""
    state = tmp_path / "state"
    monkeypatch.setenv("STATE_DIRECTORY", str(state))
    return state


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    """An anonymous broker, fresh for each test (retained messages do not leak between tests)."""
    with Mosquitto(tmp_path / "mosquitto").start() as running:
        yield running


@pytest.fixture
def auth_broker(tmp_path: Path) -> Iterator[Mosquitto]:
    """A broker that accepts only the users in USERS (allow_anonymous false, password file)."""
    with Mosquitto(tmp_path / "mosquitto-auth", users=USERS).start() as running:
        yield running


@pytest.fixture
def tls_broker(tmp_path: Path) -> Iterator[tuple[Mosquitto, Path, Path]]:
    """An anonymous Mosquitto whose only listener speaks TLS with a certificate for 127.0.0.1 signed by a CA made
    here; returns (broker, that CA, a second CA that signed nothing)."""
    pki = make_pki(tmp_path / "pki")
    with Mosquitto(tmp_path / "mosquitto-tls", tls=(pki.server_cert, pki.server_key)).start() as broker:
        yield broker, pki.ca, pki.other_ca
