import math
import os
import subprocess
import sys
import time

import pytest

from bench.cpu_budget import CpuBudget, process_cpu_seconds


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


def test_echo_cost_per_call_adds_client_and_server_cpu() -> None:
    # 2000 calls/s with the client at 80% and the server at 100% of one CPU: 0.9 ms of CPU per call
    budget = CpuBudget.from_echo(2000.0, client_cpu_percent=80.0, server_cpu_percent=100.0)
    assert budget.echo_cpu_ms_per_call == pytest.approx(0.9)


def test_ceiling_is_cpus_over_cost_per_call() -> None:
    budget = CpuBudget(cpus=2, echo_calls_per_s=4000.0, echo_cpu_ms_per_call=0.4)
    assert budget.ceiling_calls_per_s(0.0) == pytest.approx(5000.0)
    assert budget.ceiling_calls_per_s(0.1) == pytest.approx(4000.0)
    assert budget.ceiling_share_of_echo(0.1) == pytest.approx(1.0)
    # more compute per text can only lower the ceiling
    ceilings = [budget.ceiling_calls_per_s(ms) for ms in (0.0, 0.05, 0.2, 1.0)]
    assert ceilings == sorted(ceilings, reverse=True)
    assert math.isfinite(budget.ceiling_calls_per_s(10.0))
