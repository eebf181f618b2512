"""The systemd unit: `systemd-analyze verify` is clean and `systemd-analyze security` exposure stays <= 2.0."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest
from media import ROOT

UNIT = ROOT / "systemd" / "edged.service"
EXEC_START = "/opt/edged/bin/edged run"
MAX_EXPOSURE = 2.0

needs_analyze = pytest.mark.skipif(shutil.which("systemd-analyze") is None,
                                   reason="systemd-analyze is absent (apt-get install systemd)")


def _directives() -> list[tuple[str, str]]:
    pairs = []
    for line in UNIT.read_text().splitlines():
        if line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            pairs.append((key, value))
    return pairs


def _analyze(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["systemd-analyze", *args], capture_output=True, text=True, timeout=60)


def test_unit_is_a_notify_service_with_watchdog_restarts_and_credentials():
    d = dict(_directives())
    assert d["Type"] == "notify" and d["ExecStart"] == EXEC_START and d["WatchdogSec"]
    assert d["Restart"] == "on-failure" and d["RestartPreventExitStatus"] == "78"  # edged's EX_CONFIG
    assert d["StartLimitIntervalSec"] and d["StartLimitBurst"]
    assert d["EnvironmentFile"] == "-/etc/edged/edged.env"
    assert d["LoadCredential"] == "mqtt_password:/etc/edged/mqtt_password"  # edged.settings reads that name
    assert d["StateDirectory"] == "edged" and d["DynamicUser"] == "yes" and d["SupplementaryGroups"] == "video"


def test_camera_devices_are_allowed_by_class_not_by_glob():
    allowed = [value for key, value in _directives() if key == "DeviceAllow"]
    assert {value.split()[0] for value in allowed} == {"char-video4linux", "char-media", "char-dma_heap"}
    assert not any("*" in value for value in allowed)  # DeviceAllow=/dev/video* silently matches nothing
    assert ("BindPaths", "-/tmp/argus_socket") in _directives()  # Jetson's nvargus socket, despite PrivateTmp=


@needs_analyze
def test_systemd_analyze_verify_is_clean(tmp_path):
    # verify insists that ExecStart= exists: point it at a stand-in, change nothing else
    stand_in = tmp_path / "edged"
    stand_in.write_text("#!/bin/sh\n")
    stand_in.chmod(0o755)
    unit = tmp_path / "edged.service"
    unit.write_text(UNIT.read_text().replace(f"ExecStart={EXEC_START}", f"ExecStart={stand_in} run"))
    result = _analyze("verify", "--man=no", str(unit))
    assert result.returncode == 0 and result.stderr == "", result.stderr


@needs_analyze
def test_exposure_is_at_most_2(tmp_path):
    result = _analyze("security", "--offline=yes", "--no-pager", str(UNIT))
    match = re.search(r"Overall exposure level for edged\.service: (\d+\.\d+)", result.stdout)
    assert match, result.stdout + result.stderr
    assert float(match.group(1)) <= MAX_EXPOSURE, result.stdout
