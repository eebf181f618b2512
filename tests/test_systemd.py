"""The systemd unit (`systemd-analyze verify` clean, exposure <= 2.0) and the install script run into a temporary root."""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
from pathlib import Path

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
    # No start limit: systemd counts manual starts too, so a limit would stop restarting real crashes after an
    # install and a few restarts; 78 (configuration) is never restarted, so only what a restart can fix repeats.
    assert d["StartLimitIntervalSec"] == "0" and "StartLimitBurst" not in d and d["RestartSec"] == "10s"
    assert d["EnvironmentFile"] == "-/etc/edged/edged.env"
    assert d["LoadCredential"] == "mqtt_password:/etc/edged/mqtt_password"  # edged.settings reads that name
    assert d["StateDirectory"] == "edged" and d["DynamicUser"] == "yes" and d["SupplementaryGroups"] == "video"


def test_stop_timeout_outlasts_the_longest_clean_shutdown():
    from edged.pipeline import CAPTURE_JOIN_S
    from edged.publisher import DRAIN_JOIN_S, OFFLINE_WAIT_MIN_S
    from edged.settings import OutboxSettings

    longest_flush = OutboxSettings.model_fields["flush_timeout_s"].metadata
    flush_max = next(m.le for m in longest_flush if getattr(m, "le", None) is not None)
    stop_s = int(dict(_directives())["TimeoutStopSec"].removesuffix("s"))
    bounded = CAPTURE_JOIN_S + flush_max + OFFLINE_WAIT_MIN_S + DRAIN_JOIN_S
    # Beyond the bounded waits: publishing face_left, state and stats, and disconnecting (well under 2 s).
    assert stop_s >= bounded + 2


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


def _script(name: str, destdir: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("EDGED_", "DESTDIR"))}
    env = {**clean, "DESTDIR": str(destdir), "EDGED_PLATFORM": "generic", "EDGED_INSTALL_NO_PIP": "1",
           "EDGED_INSTALL_NO_SYSTEMCTL": "1", **env}
    return subprocess.run(["bash", str(ROOT / "systemd" / name), *args], env=env, capture_output=True, text=True,
                          timeout=60)


def test_install_into_a_root_writes_the_unit_and_config_and_keeps_an_edited_env_file(tmp_path):
    root = tmp_path / "root"
    first = _script("install.sh", root)
    assert first.returncode == 0, first.stderr
    unit, env, password = (root / "etc/systemd/system/edged.service", root / "etc/edged/edged.env",
                           root / "etc/edged/mqtt_password")
    assert unit.read_text() == UNIT.read_text()
    assert env.read_text() == (ROOT / "systemd" / "edged.env.example").read_text()
    assert (root / "etc/edged/edged.env.example").read_text() == env.read_text()
    assert password.read_text() == "" and stat.S_IMODE(password.stat().st_mode) == 0o600  # empty: no password
    assert stat.S_IMODE(env.stat().st_mode) == 0o600  # may hold EDGED_MQTT_PASSWORD where systemd < 247
    check = root / "opt/edged/bin/edged-check-sandboxed"  # the model is package data now: nothing to copy
    assert check.read_text() == (ROOT / "systemd" / "check.sh").read_text() and os.access(check, os.X_OK)

    env.write_text("EDGED_CAMERA__SOURCE=picamera2\n")
    password.write_text("s3cret\n")
    again = _script("install.sh", root)
    assert again.returncode == 0, again.stderr
    assert env.read_text() == "EDGED_CAMERA__SOURCE=picamera2\n" and password.read_text() == "s3cret\n"
    assert "keeping" in again.stdout

    kept = _script("uninstall.sh", root)
    assert kept.returncode == 0, kept.stderr
    assert not unit.exists() and not (root / "opt/edged").exists() and env.exists()
    purged = _script("uninstall.sh", root, "--purge")
    assert purged.returncode == 0 and not (root / "etc/edged").exists()


def test_install_points_the_unit_at_another_prefix(tmp_path):
    result = _script("install.sh", tmp_path, EDGED_PREFIX="/srv/edged")
    assert result.returncode == 0, result.stderr
    unit = (tmp_path / "etc/systemd/system/edged.service").read_text()
    assert "ExecStart=/srv/edged/bin/edged run" in unit and "/opt/edged" not in unit


def test_install_on_a_jetson_allows_its_tegra_devices_by_path(tmp_path):
    dev = tmp_path / "dev"
    (dev / "nvgpu" / "igpu0").mkdir(parents=True)
    for node in ("nvmap", "nvhost-ctrl", "nvhost-vic", "nvgpu/igpu0/ctrl"):
        (dev / node).touch()
    root = tmp_path / "root"
    result = _script("install.sh", root, EDGED_PLATFORM="jetson", EDGED_DEV=str(dev))
    assert result.returncode == 0, result.stderr
    dropin = (root / "etc/systemd/system/edged.service.d/jetson.conf").read_text().splitlines()
    assert dropin[1:] == ["[Service]", "DeviceAllow=/dev/nvmap rw", "DeviceAllow=/dev/nvhost-ctrl rw",
                          "DeviceAllow=/dev/nvhost-vic rw", "DeviceAllow=/dev/nvgpu/igpu0/ctrl rw"]
    assert _script("uninstall.sh", root).returncode == 0
    assert not (root / "etc/systemd/system/edged.service.d").exists()


SUPERVISION = {"Type", "NotifyAccess", "WatchdogSec", "Restart", "RestartSec", "RestartPreventExitStatus",
               "TimeoutStartSec", "TimeoutStopSec", "ExecStart"}


def _service_section() -> list[str]:
    lines, section = [], ""
    for line in UNIT.read_text().splitlines():
        if line.startswith("["):
            section = line
        elif line and not line.startswith("#") and section == "[Service]":
            lines.append(line)
    return lines


def test_check_runs_in_the_services_sandbox_with_its_drop_ins_and_stops_a_running_service(tmp_path):
    """systemd/check.sh against stand-ins for systemctl and systemd-run that record what they are asked: every
    [Service] setting of the unit and its drop-ins but the supervision ones becomes a property of the transient
    check, a running service is stopped for it and started again, and the check's status comes back.
    (Under a real systemd: bench/systemd_boot.sh.)"""
    if os.geteuid() != 0:
        pytest.skip("systemd/check.sh refuses to run without root")
    bin_dir, calls, run_args = tmp_path / "bin", tmp_path / "calls", tmp_path / "run-args"
    bin_dir.mkdir()
    (bin_dir / "systemctl").write_text(f"""#!/bin/sh
echo "$*" >> {calls}
case "$1" in
  cat) echo "# /etc/systemd/system/edged.service"; cat {UNIT}
       printf '\\n# /etc/systemd/system/edged.service.d/override.conf\\n[Service]\\nEnvironment=EDGED_LOG_LEVEL=DEBUG\\n' ;;
  is-active) exit "$(cat {tmp_path}/active)" ;;
  start) exit "$(cat {tmp_path}/start)" ;;
esac
""")
    (bin_dir / "systemd-run").write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > {run_args}\nexit "$(cat {tmp_path}/check)"\n')
    for tool in bin_dir.iterdir():
        tool.chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}

    (tmp_path / "active").write_text("3")  # inactive
    (tmp_path / "check").write_text("1")
    result = subprocess.run(["bash", str(ROOT / "systemd" / "check.sh"), "--skip-broker"], env=env,
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 1, result.stderr  # what edged check answered
    args = run_args.read_text().splitlines()
    props = [args[i + 1] for i, arg in enumerate(args) if arg == "-p"]
    expected = [line for line in _service_section() if line.partition("=")[0] not in SUPERVISION]
    assert props == [*expected, "Environment=EDGED_LOG_LEVEL=DEBUG"]
    assert {"DynamicUser=yes", "ProtectHome=yes", "EnvironmentFile=-/etc/edged/edged.env"} <= set(props)
    assert args[-3:] == ["/opt/edged/bin/edged", "check", "--skip-broker"] and "--wait" in args and "--pipe" in args
    assert "stop" not in calls.read_text()

    # An upgrade: the old service holds the camera. The check finds a configuration error (78), so the service,
    # started again with the same configuration, fails too: the check's status is what comes back.
    (tmp_path / "active").write_text("0")
    (tmp_path / "check").write_text("78")
    (tmp_path / "start").write_text("1")
    again = subprocess.run(["bash", str(ROOT / "systemd" / "check.sh")], env=env, capture_output=True, text=True,
                           timeout=30)
    assert calls.read_text().splitlines()[-2:] == ["stop edged.service", "start edged.service"]
    assert again.returncode == 78 and "did not start again" in again.stderr, again.stderr
