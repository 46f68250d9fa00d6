"""What Linux's /proc says about a process: the CPU time and memory the benchmarks report."""

from __future__ import annotations

import os
from pathlib import Path


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, all its threads."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat.rsplit(")", 1)[1].split()  # the command name may contain spaces; fields follow ")"
    utime, stime = int(fields[11]), int(fields[12])  # fields 14 and 15 of proc(5), counted from 1
    return (utime + stime) / os.sysconf("SC_CLK_TCK")


def status_kib(pid: int, *names: str) -> tuple[int, ...]:
    """Memory fields of /proc/<pid>/status (VmRSS, VmHWM, ...) in KiB, in the order asked."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
    missing = [name for name in names if name not in fields]
    if missing:
        raise RuntimeError(f"no {', '.join(missing)} for process {pid}")
    return tuple(int(fields[name].split()[0]) for name in names)


def rss_bytes(pid: int) -> int:
    """Resident set size of a process."""
    (rss_kib,) = status_kib(pid, "VmRSS")
    return rss_kib * 1024


def process_tree(pid: int) -> list[int]:
    """A process and all its descendants (a server and its workers), parents before children."""
    tree = [pid]
    for parent in tree:  # grows while it is walked
        for task in Path(f"/proc/{parent}/task").iterdir():
            try:
                children = (task / "children").read_text().split()
            except FileNotFoundError:  # the thread ended since the listing: it has no children now
                continue
            tree.extend(int(child) for child in children)
    return tree


def tree_cpu_seconds(pid: int) -> float:
    """CPU time of a process and its descendants, all threads."""
    return sum(process_cpu_seconds(member) for member in process_tree(pid))
