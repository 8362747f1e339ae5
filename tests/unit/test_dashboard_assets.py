"""scripts/install-echarts: the dashboard's chart library comes from its npm package, at the pinned version
and integrity; once in place, a rerun needs neither npm nor the network; a tarball that is not the pinned
one is refused and nothing is installed."""

from __future__ import annotations

import base64
import hashlib
import os
import re
import subprocess
import time
from pathlib import Path

import pytest

from api.app import STATIC_DIR

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "install-echarts"
ECHARTS = STATIC_DIR / "vendor" / "echarts"
KEPT = {"echarts.min.js", "LICENSE", "NOTICE", "LICENSE-d3", "INSTALLED"}


def pinned() -> dict[str, str]:
    """The version and sha512 integrity scripts/install-echarts pins."""
    text = SCRIPT.read_text()
    return {name: re.search(rf"^ECHARTS_{name.upper()}=(\S+)$", text, re.M).group(1) for name in ("version", "integrity")}


def install(target: Path | None = None, **env: str) -> subprocess.CompletedProcess:
    extra = {"ECHARTS_DIR": str(target)} if target is not None else {}
    return subprocess.run(
        ["/bin/bash", str(SCRIPT)], env={**os.environ, **extra, **env}, capture_output=True, text=True, timeout=300
    )


def test_the_installed_library_is_the_pinned_release_with_its_licence():
    pin = pinned()
    assert re.fullmatch(r"\d+\.\d+\.\d+", pin["version"]) and pin["integrity"].startswith("sha512-")
    assert {path.name for path in ECHARTS.iterdir()} == KEPT
    assert (ECHARTS / "INSTALLED").read_text() == f"echarts@{pin['version']} {pin['integrity']}\n"
    assert f'version="{pin["version"]}"' in (ECHARTS / "echarts.min.js").read_text()
    assert "Apache License" in (ECHARTS / "LICENSE").read_text() and "Apache ECharts" in (ECHARTS / "NOTICE").read_text()
    ignored = subprocess.run(["git", "check-ignore", "-q", str(ECHARTS / "echarts.min.js")], cwd=ROOT, timeout=30)
    assert ignored.returncode == 0, "the installed library must stay out of git"


def test_an_install_in_place_returns_at_once_without_npm_or_the_network():
    before = {path.name: path.stat().st_mtime_ns for path in ECHARTS.iterdir()}
    started = time.monotonic()
    result = subprocess.run(["/bin/bash", str(SCRIPT)], env={"PATH": ""}, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0 and result.stdout == result.stderr == "", result.stderr
    assert time.monotonic() - started < 2
    assert {path.name: path.stat().st_mtime_ns for path in ECHARTS.iterdir()} == before


@pytest.mark.slow  # npm pack (from npm's cache after scripts/install)
def test_a_fresh_install_keeps_the_browser_build_and_the_licences(tmp_path):
    target = tmp_path / "vendor" / "echarts"
    result = install(target)
    assert result.returncode == 0, result.stderr
    assert {path.name for path in target.iterdir()} == KEPT
    assert (target / "echarts.min.js").read_bytes() == (ECHARTS / "echarts.min.js").read_bytes()
    assert [path.name for path in target.parent.iterdir()] == ["echarts"]  # no staging directory left behind
    again = install(target)
    assert again.returncode == 0 and again.stderr == ""  # in place: nothing fetched


@pytest.mark.slow  # npm pack (from npm's cache after scripts/install)
def test_a_tarball_that_is_not_the_pinned_one_is_refused_and_what_was_there_stays(tmp_path):
    target = tmp_path / "vendor" / "echarts"
    target.mkdir(parents=True)
    (target / "INSTALLED").write_text("echarts@0.0.1 sha512-older\n")
    other = "sha512-" + base64.b64encode(hashlib.sha512(b"not the echarts tarball").digest()).decode()
    result = install(target, ECHARTS_PIN_INTEGRITY=other)
    assert result.returncode == 1
    assert f"integrity mismatch for echarts@{pinned()['version']}" in result.stderr and pinned()["integrity"] in result.stderr
    assert [path.name for path in target.iterdir()] == ["INSTALLED"]
    assert (target / "INSTALLED").read_text() == "echarts@0.0.1 sha512-older\n"
    assert [path.name for path in target.parent.iterdir()] == ["echarts"]
