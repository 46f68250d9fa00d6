"""bench.memory_growth: the line that keeps allocating between two snapshots is the top growth site."""

from __future__ import annotations

import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench import memory_growth

KEPT: list[bytearray] = []


def keep(count: int) -> None:
    for _ in range(count):
        KEPT.append(bytearray(1000))  # the growing site


@pytest.fixture
def tracing() -> Iterator[None]:
    tracemalloc.start(4)
    try:
        yield
    finally:
        tracemalloc.stop()
        KEPT.clear()


def dump(path: Path) -> Path:
    tracemalloc.take_snapshot().dump(str(path))
    return path


def test_the_growing_line_tops_the_sites_with_its_stack(tracing: None, tmp_path: Path) -> None:
    keep(10)
    before = dump(tmp_path / "before.tracemalloc")
    keep(200)
    after = dump(tmp_path / "after.tracemalloc")
    change = memory_growth.growth(before, after, top=3)
    line = keep.__code__.co_firstlineno + 2
    top = change.sites[0]
    assert top.where == f"tests/bench/test_memory_growth.py:{line}"
    assert top.count_diff >= 200 and top.size_diff >= 200 * 1000 and top.size >= 210 * 1000
    assert change.traced_after - change.traced_before >= 200 * 1000
    size_diff, stack = change.stacks[0]
    assert size_diff >= 200 * 1000 and "keep(200)" in "\n".join(stack)
    table = "\n".join(memory_growth.markdown(change, "before -> after"))
    assert f"| `tests/bench/test_memory_growth.py:{line}` | +" in table


def test_paths_are_shortened_to_where_a_reader_finds_them() -> None:
    assert (
        memory_growth.short_path(str(memory_growth.REPO_ROOT / "serving" / "batcher.py"))
        == "serving/batcher.py"
    )
    site = "/x/.venv/lib/python3.11/site-packages/grpc/aio/_call.py"
    assert memory_growth.short_path(site) == "grpc/aio/_call.py"
    assert memory_growth.short_path("/usr/lib/python3.11/asyncio/events.py") == "python3.11/asyncio/events.py"
