"""Fails when pytest's JUnit report holds a skip that .ci/allowed-skips does not allow.

    python .ci/check_skips.py REPORT.xml .ci/allowed-skips

Prints nothing when every skip is allowed; otherwise each test skipped without leave, and exits 1.
"""

from __future__ import annotations

import re
import sys
import xml.etree.ElementTree as ElementTree
from pathlib import Path


def allowed_patterns(path: Path) -> list[re.Pattern[str]]:
    lines = (line.strip() for line in path.read_text().splitlines())
    return [re.compile(line) for line in lines if line and not line.startswith("#")]


def skips(report: Path) -> list[tuple[str, str]]:
    """(test id, skip message) of every skipped test case."""
    found = []
    for case in ElementTree.parse(report).iter("testcase"):
        for skipped in case.iter("skipped"):
            found.append((f"{case.get('classname')}::{case.get('name')}", skipped.get("message", "")))
    return found


def main(report: str, allow_list: str) -> int:
    patterns = allowed_patterns(Path(allow_list))
    unexpected = [
        (test, message)
        for test, message in skips(Path(report))
        if not any(pattern.search(message) for pattern in patterns)
    ]
    for test, message in unexpected:
        print(f"skipped outside {allow_list}: {test}: {message}")
    return 1 if unexpected else 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
