"""bench.soak's arithmetic: the schedule of an hour, the load mix, the judged RSS growth and the verdict."""

from __future__ import annotations

from collections import Counter

import pytest

from bench.soak import (
    PROTOCOLS,
    ExplainTally,
    Memory,
    Schedule,
    SoakResult,
    Window,
    mixes,
    passed,
    warning_lines,
)

MIB = 2**20


def test_an_hour_traces_from_minute_5_snapshots_at_10_30_60_and_judges_the_last_40() -> None:
    assert Schedule.of(3600) == Schedule(60, 60.0, 5, (10, 30, 60), 40)
    assert Schedule.of(180) == Schedule(12, 15.0, 1, (2, 6, 12), 8)
    assert Schedule.of(3600, traced=False) == Schedule(60, 60.0, 0, (), 40)


def test_every_model_gets_every_protocol_and_every_text_count() -> None:
    shares = mixes(["a", "b"], 32)
    assert sum(m.concurrency for m in shares) == 32
    per_pair = Counter()
    for m in shares:
        per_pair[(m.model, m.protocol)] += m.concurrency
    assert set(per_pair) == {(model, protocol) for model in "ab" for protocol in PROTOCOLS}
    assert set(per_pair.values()) == {5, 6}
    assert {m.batch for m in shares if (m.model, m.protocol) == ("b", "tfs")} == {1, 2, 3, 4}


def memory(rss_mib: float, tracemalloc_mib: float = 0.0) -> Memory:
    return Memory(int(rss_mib * MIB), int(tracemalloc_mib * MIB), 0, None, None, None)


def window(rss_mib: float, tracemalloc_mib: float = 0.0, errors: Counter[str] | None = None) -> Window:
    return Window(100, errors or Counter(), 1, 0, 1.0, 2.0, memory(rss_mib, tracemalloc_mib))


def result(windows: list[Window], explain_errors: Counter[str] | None = None) -> SoakResult:
    explains = ExplainTally(ok=len(windows), errors=explain_errors or Counter(), due=len(windows))
    schedule = Schedule(len(windows), 60.0, 1, (2, 3), 2)
    return SoakResult(schedule, windows, memory(99), {}, explains, [], 180.0, 32, 1.0, ["a", "b"], 1)


def test_growth_is_judged_from_the_window_before_the_span_with_tracemalloc_left_out() -> None:
    # tracemalloc's tables grow by 2 MiB during the judged span; the server's own memory by 0.5 MiB
    run = result([window(100), window(101, 1.0), window(103.5, 3.0), window(103, 3.0)])
    assert run.judged_start.memory.rss_bytes == 101 * MIB
    assert run.rss_growth == pytest.approx(0.5 / 100) and passed(run, [])
    assert run.raw_rss_growth == pytest.approx(103.5 / 101 - 1)
    assert not passed(result([window(100), window(100), window(101.5), window(101)]), [])  # +1.5 %


def test_any_error_or_server_warning_fails_the_soak() -> None:
    flat = [window(100), window(100), window(100), window(100)]
    assert passed(result(flat), [])
    failed = [*flat[:3], window(100, errors=Counter({"v2 UNAVAILABLE": 1}))]
    assert not passed(result(failed), [])
    assert not passed(result(flat, Counter({"RESOURCE_EXHAUSTED": 1})), [])
    assert result(flat, Counter({"RESOURCE_EXHAUSTED": 1})).errors == Counter(
        {"explain RESOURCE_EXHAUSTED": 1}
    )
    assert not passed(result(flat), ['{"level": "warning", "msg": "inference failed"}'])


def test_only_grpc_core_info_lines_are_not_warnings() -> None:
    log = "\n".join(
        [
            "I1205 20:01:37.826701    2019 fork_posix.cc:71] Other threads are currently calling into gRPC, "
            "skipping fork() handlers",
            '{"level": "error", "msg": "inference failed"}',
            "E1205 20:01:38.000001    2019 chttp2_transport.cc:1] something broke",
            "Traceback (most recent call last):",
            "",
        ]
    )
    assert warning_lines(log) == log.splitlines()[1:4]
