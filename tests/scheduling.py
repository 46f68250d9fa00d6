"""How `make test` spreads the suite over pytest-xdist workers (`pytest -n 2`; hooked in
tests/conftest.py).

- A module's tests stay together on one worker, as with `--dist loadfile`, so that its module-scoped
  servers start once rather than once per worker.
- The modules marked `timed` bound how long something takes (a timeout, a replacement, a shutdown) or
  rank measured speeds: they form one unit, so they run one after another on one worker and never beside
  each other's load.
- A test marked `alone` depends on the machine being as quiet as in a run of its own: it compares
  latencies with a baseline measured moments before, which a neighbour's changing load skews, or counts
  on a request reaching the server within tens of milliseconds. No other test runs while it does (the
  other workers wait: AloneLock); the `alone` tests form one unit, whatever their modules' units.
- The `timed` unit starts first, then the `slow` tests: the longest units, which would otherwise end the
  run alone on one worker while the other idles. The `alone` unit comes last, when the other worker is
  finishing anyway. The other units keep the suite's order, so each worker runs its tests in the order
  the suite always ran them: no unit of tests/training/ (which run Keras in the test process, fixing
  TensorFlow's thread pools) comes before a serving test that loads the TensorFlow runtime in-process
  (which configures them, serving/runtimes/tf.py).

The workers, which collect the tests and see their marks, write each test's unit to the file named by
UNITS_ENV, which the scheduler on the controller reads: xdist's own channel for this, `--dist loadgroup`
with `xdist_group` marks, silently groups nothing on pytest 9.2 (it renames test ids through a field
pytest no longer reads; pytest-dev/pytest-xdist#1386).

Without xdist, none of this applies: the suite runs in collection order, as it always did.
"""

from __future__ import annotations

import fcntl
import json
import os
import tempfile
from pathlib import Path
from typing import IO

import pytest
from xdist.scheduler import LoadScopeScheduling

UNITS_ENV = "TESTS_SCHEDULING_UNITS"  # not SEQSERVE_*: the servers the tests start inherit it
TIMED, ALONE = "timed", "alone"


def worker() -> bool:
    return bool(os.environ.get("PYTEST_XDIST_WORKER"))


def work_unit(item: pytest.Item) -> str:
    for mark in (ALONE, TIMED):
        if item.get_closest_marker(mark):
            return mark
    return item.nodeid.split("::", 1)[0]


def start_rank(item: pytest.Item) -> int:
    """Where a test's unit starts (see above)."""
    unit = work_unit(item)
    if unit in (TIMED, ALONE):
        return 0 if unit == TIMED else 3
    return 1 if item.get_closest_marker("slow") else 2


def order_and_write_units(items: list[pytest.Item]) -> None:
    """On a worker: sort the tests so that their units start in the order above (every worker sorts
    alike: xdist requires the same collection), and write each test's unit for the scheduler."""
    items.sort(key=start_rank)
    path = Path(os.environ[UNITS_ENV])
    handle, temporary = tempfile.mkstemp(dir=path.parent)
    with os.fdopen(handle, "w") as file:
        json.dump({item.nodeid: work_unit(item) for item in items}, file)
    os.replace(temporary, path)  # every worker writes the same; a reader sees one whole file


class UnitScheduling(LoadScopeScheduling):
    """xdist's `loadscope` scheduling, each unit (see above) a scope, the units in the workers' order."""

    def __init__(self, config: pytest.Config, log: object = None) -> None:
        super().__init__(config, log)
        config.option.loadscopereorder = False  # not largest first: start_rank's order
        self._units: dict[str, str] | None = None

    def _split_scope(self, nodeid: str) -> str:
        if self._units is None:  # the workers have all collected: their files are written
            self._units = json.loads(Path(os.environ[UNITS_ENV]).read_text())
        return self._units[nodeid]


def run_directory(basetemp: Path) -> Path:
    """The temporary directory of this pytest run: under pytest-xdist each worker's basetemp (popen-gwN)
    is a folder inside it, so every worker of the run finds the same one."""
    return basetemp.parent if worker() else basetemp


class AloneLock:
    """A readers-writer lock over the run's workers (flock on two files in the run's directory): every
    test holds `running` shared, an `alone` test holds it exclusively, from its set-up to its teardown
    and on through the `alone` tests that follow it on its worker. Taking `gate` first, exclusively for
    `alone`, keeps the other workers from starting tests while it waits for theirs to end."""

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
    return item is not None and item.get_closest_marker(ALONE) is not None
