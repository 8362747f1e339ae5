"""The query side and the pure core import nothing of the Kafka workers (``streams``)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

IMPORT_ALL = """
import importlib, pkgutil, sys
for name in sys.argv[1:]:
    package = importlib.import_module(name)
    for module in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
        importlib.import_module(module.name)
print(" ".join(sorted(name for name in sys.modules if name.split(".")[0] in ("streams", "faust"))))
"""


def test_importing_api_and_online_models_imports_no_streams_module():
    result = subprocess.run(
        [sys.executable, "-c", IMPORT_ALL, "api", "online_models"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert result.stdout.split() == []
