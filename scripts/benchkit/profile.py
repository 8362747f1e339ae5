"""Where a running worker spends its time: py-spy samples, summarised by function and by area."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

#: areas of the worker, in priority order: a sample belongs to the first area any of its frames matches
AREAS = (
    ("JSON (de)serialisation of state", ("PortraitState.from_bytes", "PortraitState.to_bytes")),
    ("publication (render + send)", ("publish_portraits",)),
    ("watch: scoring, tags, samples, alerts", ("watch_user", "online_models/watch.py", "population.py", "online_models/tags.py",
                                               "online_models/features.py", "online_models/churn", "schedule.py")),
    ("event contract (pydantic)", ("online_models/events.py", "pydantic")),
    ("portrait fold", ("fold_event", "online_models/portrait.py", "online_models/admission.py", "online_models/clock.py")),
    ("table writes + changelog", ("faust/tables", "faust/stores", "rocksdict")),
    ("Kafka sends and fetches", ("_SelectorSocketTransport", "aiokafka/producer", "faust/transport/producer", "aiokafka/conn")),
    ("stream + consumer machinery", ("faust/streams", "faust/transport", "faust/agents", "aiokafka/")),
    ("event loop (scheduling, select)", ("asyncio", "selectors")),
)

#: frames worth an inclusive figure: the product's code and the table machinery under it
OWN_CODE = ("online_models/", "streams/", "faust/tables/", "faust/stores/")


def py_spy() -> str:
    """The py-spy executable next to this interpreter, or on PATH."""
    local = Path(sys.executable).parent / "py-spy"
    found = str(local) if local.exists() else shutil.which("py-spy")
    if not found:
        raise RuntimeError("py-spy is not installed: pip install '.[bench]'")
    return found


def record(pid: int, seconds: float, out: Path, rate: int = 100) -> Path:
    """Sample ``pid`` for ``seconds`` into collapsed stacks (``out``): only threads holding the GIL, so the shares are of CPU time."""
    subprocess.run([py_spy(), "record", "--pid", str(pid), "--duration", str(int(seconds)), "--rate", str(rate),
                    "--format", "raw", "--nolineno", "--output", str(out), "--nonblocking", "--gil"], check=True, capture_output=True, timeout=seconds + 60)
    return out


def summarise(collapsed: Path, top: int = 15) -> dict:
    """Self and inclusive shares of functions, and the share of each area (see :data:`AREAS`)."""
    self_time: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    areas: Counter[str] = Counter()
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        frames = stack.split(";")
        total += count
        self_time[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
        areas[_area(frames)] += count

    def shares(counter: Counter[str]) -> list[tuple[str, float]]:
        return [(name, round(100 * n / total, 1)) for name, n in counter.most_common(top)]

    own = Counter({frame: n for frame, n in inclusive.items() if any(part in frame for part in OWN_CODE)})
    return {"samples": total, "areas": shares(areas), "self": shares(self_time), "inclusive": shares(own)}


def _area(frames: list[str]) -> str:
    for name, needles in AREAS:
        if any(needle in frame for frame in frames for needle in needles):
            return name
    return "other"


def print_summary(summary: dict) -> None:
    print(f"profile: {summary['samples']} samples (inclusive: the product's code and Faust's tables only)")
    for title in ("areas", "self", "inclusive"):
        print(f"  by {title}:")
        for name, share in summary[title]:
            print(f"    {share:5.1f}%  {name}")
