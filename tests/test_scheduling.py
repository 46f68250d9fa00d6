"""tests/scheduling.py's AloneLock as the xdist workers hold it: each worker opens the lock files of its
own, so AloneLocks on one directory, one per thread, exclude one another as the workers do."""

from __future__ import annotations

import threading
from pathlib import Path

from tests.scheduling import AloneLock

WAIT_S = 10.0  # how long a thread that should get in may take
STAYS_OUT_S = 0.5  # how long a thread that should wait is watched, to see that it does


def entering(lock: AloneLock, alone: bool) -> threading.Event:
    """Starts `lock.enter(alone)` in a thread; the event is set once it has entered."""
    entered = threading.Event()

    def enter() -> None:
        lock.enter(alone)
        entered.set()

    threading.Thread(target=enter, daemon=True).start()
    return entered


def test_an_alone_test_waits_for_the_running_ones_and_no_test_starts_beside_it(tmp_path: Path) -> None:
    first, second, alone, later = (AloneLock(tmp_path) for _ in range(4))
    first.enter(alone=False)
    assert entering(second, alone=False).wait(WAIT_S)  # ordinary tests run side by side

    alone_entered = entering(alone, alone=True)
    assert not alone_entered.wait(STAYS_OUT_S)  # two tests are still running
    later_entered = entering(later, alone=False)
    assert not later_entered.wait(STAYS_OUT_S)  # the gate holds a new test back while the alone one waits
    first.leave(next_alone=False)
    assert not alone_entered.wait(STAYS_OUT_S)  # one is still running
    second.leave(next_alone=False)
    assert alone_entered.wait(WAIT_S)
    assert not later_entered.wait(STAYS_OUT_S)  # nothing runs beside the alone test
    alone.leave(next_alone=False)
    assert later_entered.wait(WAIT_S)
    later.leave(next_alone=False)


def test_an_alone_test_holds_the_others_off_until_the_last_alone_test_after_it(tmp_path: Path) -> None:
    alone, other = AloneLock(tmp_path), AloneLock(tmp_path)
    alone.enter(alone=True)
    other_entered = entering(other, alone=False)
    alone.leave(next_alone=True)  # the next test on its worker is alone too: the lock stays held
    alone.enter(alone=True)
    assert not other_entered.wait(STAYS_OUT_S)
    alone.leave(next_alone=False)
    assert other_entered.wait(WAIT_S)
