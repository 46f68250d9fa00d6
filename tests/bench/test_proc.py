import os
import subprocess
import sys
import time

import numpy as np
import pytest

from bench.proc import process_cpu_seconds, process_tree, rss_bytes, status_kib


def test_process_cpu_seconds_counts_a_busy_child_and_not_a_sleeping_one() -> None:
    spin = "import time\nt = time.process_time()\nwhile time.process_time() - t < 2: pass\ntime.sleep(30)"
    busy = subprocess.Popen([sys.executable, "-c", spin])
    idle = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        deadline = time.monotonic() + 20
        while process_cpu_seconds(busy.pid) < 1.5 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert process_cpu_seconds(busy.pid) >= 1.5
        assert process_cpu_seconds(idle.pid) < 1.0  # interpreter start-up only
    finally:
        busy.kill()
        idle.kill()
        busy.wait()
        idle.wait()


def test_process_cpu_seconds_reads_this_process_like_the_os_does() -> None:
    before = process_cpu_seconds(os.getpid())
    t = time.process_time()
    while time.process_time() - t < 0.3:
        pass
    assert process_cpu_seconds(os.getpid()) - before == pytest.approx(0.3, abs=0.1)


def test_rss_grows_with_memory_this_process_touches() -> None:
    before = rss_bytes(os.getpid())
    block = np.ones(64 * 1024 * 1024, dtype=np.uint8)  # 64 MiB, written so that it is resident
    assert rss_bytes(os.getpid()) - before >= 48 * 1024 * 1024
    del block


def test_status_fields_come_back_in_the_order_asked_and_a_missing_one_is_named() -> None:
    rss, peak = status_kib(os.getpid(), "VmRSS", "VmHWM")
    assert 0 < rss <= peak
    with pytest.raises(RuntimeError, match="no VmNothing"):
        status_kib(os.getpid(), "VmRSS", "VmNothing")


def test_process_tree_of_a_process_whose_threads_come_and_go() -> None:
    """Regression: a thread that ended between listing a process's tasks and reading its children made
    process_tree raise FileNotFoundError in the middle of a benchmark."""
    churn = (
        "import threading, time\n"
        "end = time.monotonic() + 30\n"
        "while time.monotonic() < end:\n"
        "    threads = [threading.Thread(target=int) for _ in range(20)]\n"
        "    [t.start() for t in threads]\n"
        "    [t.join() for t in threads]\n"
    )
    child = subprocess.Popen([sys.executable, "-c", churn])
    try:
        for _ in range(3000):
            assert process_tree(child.pid) == [child.pid]
    finally:
        child.kill()
        child.wait()
