"""Shared fixtures: real Mosquitto brokers on free ports (see tests/mosquitto.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from mosquitto import USERS, Mosquitto


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
