"""What every benchmark report says about the run: the machine, its load, the packages, and where the
report went."""

from __future__ import annotations

import contextlib
import platform
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def loads_text(loads: Sequence[float]) -> str:
    """A load average triple (1, 5, 15 min) as the reports print it."""
    return " ".join(f"{x:.2f}" for x in loads)


def now_text() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")


def versions(packages: Iterable[str]) -> str:
    """E.g. "grpcio 1.66.1, tensorflow-cpu (not installed)"."""
    shown = []
    for package in packages:
        try:
            shown.append(f"{package} {metadata.version(package)}")
        except metadata.PackageNotFoundError:
            shown.append(f"{package} (not installed)")
    return ", ".join(shown)


def write_report(path: Path, report: str) -> None:
    """Write a benchmark's markdown report and show it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(report, encoding="utf-8")
    print("\n" + report + f"\nwritten to {path}")
