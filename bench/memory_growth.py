"""Where Python memory grew between two tracemalloc snapshots (written by bench.traced_server).

The sites are compared by line (`Snapshot.compare_to(..., "lineno")`): the allocating line, which for a
growing cache or list is the line that appends to it. tracemalloc's own frames and imports are left out;
only blocks allocated after tracing started are in a snapshot, so a site grows when more of its blocks
are alive at the later snapshot than at the earlier one.
"""

from __future__ import annotations

import tracemalloc
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
IGNORED = (
    tracemalloc.__file__,
    "<frozen importlib._bootstrap>",
    "<frozen importlib._bootstrap_external>",
    "<unknown>",
)


@dataclass(frozen=True)
class Site:
    where: str  # file:line, short (see short_path)
    size_diff: int  # bytes alive at the later snapshot less at the earlier one
    count_diff: int  # blocks, likewise
    size: int  # bytes alive at the later snapshot


@dataclass(frozen=True)
class Growth:
    """From one snapshot to a later one: the sites that grew most, and the call stacks of the first few."""

    before: str
    after: str
    traced_before: int  # bytes in the snapshot's traces
    traced_after: int
    sites: list[Site]
    stacks: list[tuple[int, list[str]]]  # (size_diff, formatted traceback), most grown first; none at 1 frame


def short_path(filename: str) -> str:
    """A file as a reader finds it: inside the checkout, inside site-packages, or in the standard library."""
    if "site-packages/" in filename:
        return filename.rsplit("site-packages/", 1)[1]
    path = Path(filename)
    if path.is_relative_to(REPO_ROOT):
        return path.relative_to(REPO_ROOT).as_posix()
    parts = path.parts
    for index, part in enumerate(parts):
        if part.startswith("python3"):
            return "/".join(parts[index:])
    return filename


def load(path: Path) -> tracemalloc.Snapshot:
    ignored = [tracemalloc.Filter(False, pattern) for pattern in IGNORED]
    return tracemalloc.Snapshot.load(str(path)).filter_traces(ignored)


def traced_bytes(snapshot: tracemalloc.Snapshot) -> int:
    return sum(trace.size for trace in snapshot.traces)


def growth(before_path: Path, after_path: Path, top: int = 10, stacks: int = 3) -> Growth:
    before, after = load(before_path), load(after_path)
    by_line = [d for d in after.compare_to(before, "lineno") if d.size_diff > 0]
    by_line.sort(key=lambda d: d.size_diff, reverse=True)
    sites = [
        Site(
            f"{short_path(d.traceback[0].filename)}:{d.traceback[0].lineno}",
            d.size_diff,
            d.count_diff,
            d.size,
        )
        for d in by_line[:top]
    ]
    deeper = (after.traceback_limit or 1) > 1  # else a stack is its site's line again
    by_stack = [d for d in after.compare_to(before, "traceback") if d.size_diff > 0] if deeper else []
    by_stack.sort(key=lambda d: d.size_diff, reverse=True)
    return Growth(
        before_path.name,
        after_path.name,
        traced_bytes(before),
        traced_bytes(after),
        sites,
        [(d.size_diff, d.traceback.format(most_recent_first=True)) for d in by_stack[:stacks]],
    )


def markdown(change: Growth, title: str) -> list[str]:
    """A table of the grown sites and the stacks of the first few, for a report."""
    kib = 1024
    lines = [
        f"#### {title}",
        "",
        f"Traced: {change.traced_before / kib:.0f} KiB in `{change.before}`, "
        f"{change.traced_after / kib:.0f} KiB in `{change.after}`.",
        "",
        "| site | grew KiB | blocks | alive after KiB |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| `{site.where}` | {site.size_diff / kib:+.1f} | {site.count_diff:+d} | {site.size / kib:.1f} |"
        for site in change.sites
    ]
    if not change.sites:
        lines.append("| (nothing grew) | | | |")
    for size_diff, stack in change.stacks:
        lines += ["", f"{size_diff / kib:+.1f} KiB from:", "", "```", *stack, "```"]
    return lines
