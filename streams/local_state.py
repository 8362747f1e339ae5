"""The worker's local RocksDB copy of its tables, trusted only after a clean shutdown.

Faust writes a table change to the local RocksDB at once and to the changelog topic a
little later. A worker killed in between (``SIGKILL``, power loss) keeps local changes
the changelog never received, and recovery would then mix the two. The changelog is the
source of truth: after an unclean stop the local copy is dropped and rebuilt from it
(whatever prefix of a changelog partition survived is consistent, see
:mod:`online_models.processor`). A marker file written on a clean shutdown tells the two apart.

>>> import tempfile
>>> root = Path(tempfile.mkdtemp()) / "worker"
>>> open_local_state(root)            # first start: nothing to drop
False
>>> (root / "v1").mkdir(parents=True)
>>> open_local_state(root)            # a previous run never closed cleanly
True
>>> (root / "v1").exists()
False
>>> (root / "v1").mkdir(); close_local_state(root); open_local_state(root)
False
"""

from __future__ import annotations

import shutil
from pathlib import Path

CLEAN_MARKER = "CLEAN_SHUTDOWN"


def open_local_state(root: Path) -> bool:
    """Prepare ``root`` for a worker run: drop it unless the last run shut down cleanly.

    Returns whether a local copy was dropped.
    """
    marker = root / CLEAN_MARKER
    dropped = False
    if root.exists() and not marker.exists() and any(root.iterdir()):
        shutil.rmtree(root)
        dropped = True
    root.mkdir(parents=True, exist_ok=True)
    marker.unlink(missing_ok=True)
    return dropped


def close_local_state(root: Path) -> None:
    """Record that the worker stopped cleanly (its producer flushed): keep the local copy."""
    (root / CLEAN_MARKER).touch()
