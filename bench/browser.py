"""The compare page as a person sees it: Debian's headless Chromium (`make chromium`) loads it, and the
DOM it dumps is read back, table cell by table cell and plot point by point.

The page reads `/?text=...&text=...`, fills in the texts and submits the form as a person would;
`--virtual-time-budget` lets the page's fetches (and a few of its 2 s refreshes) finish before the DOM is
dumped or the screenshot taken. Shared by the page's tests and the scripts that measure or photograph it.
"""

from __future__ import annotations

import shutil
import subprocess
import urllib.parse
from collections.abc import Sequence
from html.parser import HTMLParser
from pathlib import Path

CHROMIUM = Path("/usr/bin/chromium")
# The flags that work on a machine without a display, sandbox support or network.
CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--hide-scrollbars", "--virtual-time-budget=10000",
)  # fmt: skip
BROWSER_TIMEOUT_S = 90
NO_FIGURE = "\N{EN DASH}"  # what the page's tables show for a figure not known yet


def chromium(profiles: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    """Chromium with `args` and a fresh profile under `profiles` (removed after); fails on a non-zero exit."""
    profile = profiles / f"profile-{len(list(profiles.glob('profile-*')))}"
    command = [str(CHROMIUM), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args]
    result = subprocess.run(command, capture_output=True, timeout=BROWSER_TIMEOUT_S)
    shutil.rmtree(profile, ignore_errors=True)
    if result.returncode != 0:
        raise RuntimeError(f"chromium exited with {result.returncode}: {result.stderr[-3000:]!r}")
    return result


def page_url(rest_url: str, texts: Sequence[str], runs: int | None = None, rounds: int | None = None) -> str:
    """The page comparing `texts` as it loads (none: no compare), `runs` times with `rounds` rounds each
    (None: the page's default)."""
    counts = {"runs": runs, "rounds": rounds}
    query = [("text", t) for t in texts] + [(name, str(n)) for name, n in counts.items() if n is not None]
    return f"{rest_url}/?" + urllib.parse.urlencode(query)


class Cells(HTMLParser):
    """The text of every cell, by table id, and each cell's data-model."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[list[tuple[str | None, str]]]] = {}
        self._table: str | None = None
        self._cell: list[str] | None = None
        self._model: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if tag == "table":
            self._table = attributes.get("id") or ""
            self.tables[self._table] = []
        elif tag == "tr" and self._table is not None:
            self.tables[self._table].append([])
        elif tag in ("td", "th") and self._table is not None:
            self._cell, self._model = [], attributes.get("data-model")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None and self._table is not None:
            self.tables[self._table][-1].append((self._model, "".join(self._cell).strip()))
            self._cell = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)

    def row(self, table: str, title: str) -> dict[str, str]:
        """model -> cell text of the row of `table` whose first cell is `title`."""
        (row,) = [row for row in self.tables[table] if row and row[0][1] == title]
        return {model: text for model, text in row[1:] if model is not None}

    def milliseconds(self, table: str, title: str) -> dict[str, float]:
        """model -> the figure of a row whose cells read "<number> ms"."""
        return {model: float(text.removesuffix(" ms")) for model, text in self.row(table, title).items()}

    def column(self, table: str, title: str) -> dict[str, str]:
        """First cell -> the cell under the header `title`, for each row of `table` below its header."""
        header, *rows = self.tables[table]
        index = [text for _, text in header].index(title)
        return {row[0][1]: row[index][1] for row in rows}

    def live_compute_ms(self) -> dict[str, float]:
        """The live table's compute per text (ms) per model; a model without one yet is left out."""
        shown = self.column("latency", "compute per text (ms)")
        return {model: float(text) for model, text in shown.items() if text != NO_FIGURE}


class PlotPoints(HTMLParser):
    """The speed/accuracy plot's points: their data attributes and the label drawn beside each."""

    def __init__(self) -> None:
        super().__init__()
        self.points: list[dict[str, str]] = []
        self._point: dict[str, str] | None = None
        self._in_label = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = {name: value or "" for name, value in attrs}
        if tag == "g" and "point" in attributes.get("class", "").split():
            self._point = {name[5:]: value for name, value in attributes.items() if name.startswith("data-")}
            self._point["label"] = ""
            self.points.append(self._point)
        elif tag == "text" and self._point is not None:
            self._in_label = True

    def handle_endtag(self, tag: str) -> None:
        if tag == "text":
            self._in_label = False
        elif tag == "g":
            self._point = None

    def handle_data(self, data: str) -> None:
        if self._in_label and self._point is not None:
            self._point["label"] += data


def page_dom(
    rest_url: str, texts: Sequence[str], profiles: Path, runs: int | None = None, rounds: int | None = None
) -> tuple[Cells, PlotPoints]:
    """The page after comparing `texts` (`runs` times, `rounds` rounds each): its tables and its plot's
    points."""
    dom = chromium(profiles, "--dump-dom", page_url(rest_url, texts, runs, rounds)).stdout.decode()
    cells, points = Cells(), PlotPoints()
    cells.feed(dom)
    points.feed(dom)
    return cells, points
