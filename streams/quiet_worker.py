"""Faust's worker without its terminal spinner.

The spinner sets the root logger to DEBUG and spins on every record, so every
library's debug message (several per record sent) was built and handled even
with ``--loglevel warn``: about 4,500 log records a second while catching up.
"""

from __future__ import annotations

import logging

import faust


class QuietWorker(faust.Worker):
    """A :class:`faust.Worker` that never installs the spinner."""

    def on_setup_root_logger(self, logger: logging.Logger, level: int) -> None:
        self.spinner = None
        super().on_setup_root_logger(logger, level)
