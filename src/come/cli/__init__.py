"""The ``come`` command line: data, train, sample, eval, export, presets, toy, demo, play, bench.

Every command explains itself with ``--help``. Bad input ends with one line on
stderr naming the file or argument and what is wrong, and exit code 2.
"""

import os

from . import training, showcase, data, evaluate, planning, play, bench  # noqa: F401  (each registers its commands, in this order)
from .common import UserError, app

__all__ = ["UserError", "app", "main"]


def main():
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    app()
