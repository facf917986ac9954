"""docs/logs-collector.service: systemd accepts it, and it stops the server as
docs/operations.md says (SIGTERM, a stop timeout above SHUTDOWN_GRACE, hardened).

``systemd-analyze verify`` refuses a unit whose ``ExecStart`` binary does not exist, and
its ``--root`` needs a whole systemd tree (sysinit.target …). So the unit is verified as a
copy whose command paths point at an executable stub in a temporary directory: every
other line is checked as shipped, and no warning of any kind is accepted.
"""

import configparser
import shutil
import subprocess
from pathlib import Path

import pytest

from collector import server
from collector.settings import DEFAULTS

UNIT = Path(__file__).parents[2] / "docs" / "logs-collector.service"
COMMAND = "/opt/logs-collector/.venv/bin/collector"


def service_section():
    parser = configparser.ConfigParser(strict=False, interpolation=None,
                                       comment_prefixes=("#",))
    parser.optionxform = str  # systemd's keys are case-sensitive
    parser.read_string(UNIT.read_text())
    return parser["Service"]


def verify(tmp_path, text):
    stub = tmp_path / "collector"
    stub.write_text("#!/bin/sh\n")
    stub.chmod(0o755)
    unit = tmp_path / "logs-collector.service"
    unit.write_text(text.replace(COMMAND, str(stub)))
    return subprocess.run([ANALYZE, "verify", "--man=no", str(unit)], capture_output=True,
                          text=True, timeout=60)


ANALYZE = shutil.which("systemd-analyze") or "/usr/bin/systemd-analyze"
needs_systemd = pytest.mark.skipif(not Path(ANALYZE).exists(),
                                   reason="systemd-analyze is not installed")


@needs_systemd
def test_systemd_verifies_the_unit_without_a_warning(tmp_path):
    text = UNIT.read_text()
    assert COMMAND in text
    result = verify(tmp_path, text)
    assert result.returncode == 0 and not result.stderr.strip(), result.stderr


@needs_systemd
def test_the_check_sees_a_broken_unit(tmp_path):
    result = verify(tmp_path, UNIT.read_text().replace("KillMode=mixed", "KillMode=gently"))
    assert "kill mode" in result.stderr  # a warning only: the exit status is still 0


def test_it_stops_the_server_with_sigterm_and_time_to_drain():
    service = service_section()
    assert service["KillSignal"] == "SIGTERM"
    grace = float(next(line.split("=", 2)[2] for line in UNIT.read_text().splitlines()
                       if line.startswith("Environment=SHUTDOWN_GRACE=")))
    assert grace == DEFAULTS["shutdown.grace"]
    # The drain, then the rollback of what the deadline cut, then some slack.
    assert float(service["TimeoutStopSec"]) >= grace + server.ABORT_WAIT + 5


def test_it_is_hardened():
    service = service_section()
    expected = {"NoNewPrivileges": "yes", "ProtectSystem": "strict", "PrivateTmp": "yes",
                "ProtectHome": "yes", "PrivateDevices": "yes", "CapabilityBoundingSet": ""}
    assert {key: service.get(key) for key in expected} == expected
    assert "/var/lib/logs-collector" in service["ReadWritePaths"]
    assert "DATA_DIR=/var/lib/logs-collector" in UNIT.read_text()
