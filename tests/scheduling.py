"""How `make test` spreads the suite over pytest-xdist workers (`-n 2 --dist loadgroup
--no-loadscope-reorder`, hooked in tests/conftest.py).

- A module's tests stay together on one worker, as with `--dist loadfile`, so that its module-scoped
  servers start once rather than once per worker.
- The modules marked TIMED bound how long something takes (a timeout, a replacement, a shutdown) or rank
  measured speeds: they form one group, so they run one after another on one worker and never beside
  each other's load.
- A test marked `alone` compares latencies with a baseline it measured moments before, which a
  neighbour's changing load skews: no other test runs while it does (the other workers wait).
- The `alone` tests start first, then the rest of the TIMED group and the `slow` tests: the longest
  units, which would otherwise end the run alone on one worker while the other idles.

Without xdist, none of this applies: the suite runs in collection order, as it always did.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import IO

import pytest
from xdist.scheduler import LoadGroupScheduling

# For a module's `pytestmark`: its assertions bound elapsed time or compare measured speeds.
TIMED = pytest.mark.xdist_group("timed")


class ModuleScheduling(LoadGroupScheduling):
    """`--dist loadgroup` whose ungrouped tests are grouped by module."""

    def _split_scope(self, nodeid: str) -> str:
        group = super()._split_scope(nodeid)
        return group if group != nodeid else nodeid.split("::", 1)[0]


def start_rank(item: pytest.Item) -> int:
    """Where a test's unit starts under xdist: `alone` tests first, then the other grouped tests, then
    the slow ones, then the rest."""
    if is_alone(item):
        return 0
    if item.get_closest_marker("xdist_group"):
        return 1
    return 2 if item.get_closest_marker("slow") else 3


def run_directory(basetemp: Path) -> Path:
    """The temporary directory of this pytest run: under pytest-xdist each worker's basetemp (popen-gwN)
    is a folder inside it, so every worker of the run finds the same one."""
    return basetemp.parent if os.environ.get("PYTEST_XDIST_WORKER") else basetemp


class AloneLock:
    """A readers-writer lock over the run's workers (flock on two files in the run's directory): every
    test holds `running` shared, an `alone` test holds it exclusively, from its set-up to its teardown
    and on through the `alone` tests that follow it on its worker. Taking `gate` first, exclusively
    for `alone`, keeps the other workers from starting tests while it waits for theirs to end."""

    def __init__(self, directory: Path) -> None:
        self._gate: IO[str] = (directory / "alone.gate").open("a")
        self._running: IO[str] = (directory / "alone.running").open("a")
        self._alone = False

    def enter(self, alone: bool) -> None:
        """Before a test (`alone`: marked so) starts its set-up."""
        if not alone:
            fcntl.flock(self._gate, fcntl.LOCK_SH)
            fcntl.flock(self._running, fcntl.LOCK_SH)
            fcntl.flock(self._gate, fcntl.LOCK_UN)
        elif not self._alone:
            fcntl.flock(self._gate, fcntl.LOCK_EX)
            fcntl.flock(self._running, fcntl.LOCK_EX)
            self._alone = True

    def leave(self, next_alone: bool) -> None:
        """After a test's teardown (`next_alone`: the worker's next test is marked `alone` too)."""
        if self._alone and next_alone:
            return
        fcntl.flock(self._running, fcntl.LOCK_UN)
        if self._alone:
            fcntl.flock(self._gate, fcntl.LOCK_UN)
            self._alone = False


def is_alone(item: pytest.Item | None) -> bool:
    return item is not None and item.get_closest_marker("alone") is not None
