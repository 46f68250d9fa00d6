"""The documentation's links resolve: relative file links and #anchors, by GitHub's heading slugs.

Checked: README.md, docs/*.md, serving/README.md and models/README.md. A link into another Markdown
file of the repository has its anchor checked against that file's headings too."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
README = REPO_ROOT / "README.md"
README_MAX_LINES = 150
DOCUMENTS = sorted(
    {README, REPO_ROOT / "serving" / "README.md", REPO_ROOT / "models" / "README.md"}
    | set((REPO_ROOT / "docs").glob("*.md"))
)

_FENCE = re.compile(r"^(```|~~~)")
_INLINE_CODE = re.compile(r"(`+)(.+?)\1")
# [text](target) and ![alt](target); the target ends at whitespace (an optional "title" follows)
_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]*)>?(?:\s+\"[^\"]*\")?\s*\)")
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")


def _prose_lines(text: str) -> list[str]:
    """The lines outside fenced code blocks."""
    lines, fenced = [], False
    for line in text.splitlines():
        if _FENCE.match(line.strip()):
            fenced = not fenced
            continue
        lines.append("" if fenced else line)
    return lines


def github_slug(heading: str) -> str:
    """GitHub's anchor for a heading: the rendered text, lower case, punctuation dropped (except `-`
    and `_`), each space a hyphen."""
    text = _INLINE_CODE.sub(lambda m: m.group(2), heading)
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", text)  # links keep their text
    text = re.sub(r"<[^>]+>", "", text)  # inline HTML
    text = re.sub(r"[*~]", "", text)  # emphasis markers (underscores stay, as GitHub keeps them)
    return re.sub(r"[^\w\- ]", "", text.strip().lower()).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every heading's anchor in a Markdown file; repeated headings get -1, -2 ... as on GitHub."""
    seen: dict[str, int] = {}
    found = set()
    for line in _prose_lines(path.read_text()):
        match = _HEADING.match(line)
        if not match:
            continue
        slug = github_slug(match.group(2))
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        found.add(slug if count == 0 else f"{slug}-{count}")
    return found


def links(path: Path) -> list[tuple[int, str]]:
    """(line number, target) of every Markdown link outside code."""
    found = []
    for number, line in enumerate(_prose_lines(path.read_text()), start=1):
        prose = _INLINE_CODE.sub("", line)
        found.extend((number, target) for target in _LINK.findall(prose))
    return found


def broken_links(path: Path, root: Path = REPO_ROOT) -> list[str]:
    """What is wrong with each link of `path` that does not resolve; external URLs are not fetched."""
    problems = []
    for number, target in links(path):
        parts = urlsplit(target)
        if parts.scheme or parts.netloc:
            continue
        where = f"{path.relative_to(root)}:{number}: {target}"
        destination = (path.parent / unquote(parts.path)).resolve() if parts.path else path
        if not destination.exists():
            problems.append(f"{where}: no such file")
        elif not destination.is_relative_to(root):
            problems.append(f"{where}: outside the repository")
        elif parts.fragment:
            if destination.suffix != ".md":
                problems.append(f"{where}: an anchor into a file that is not Markdown")
            elif unquote(parts.fragment) not in anchors(destination):
                problems.append(f"{where}: no heading with this anchor in {destination.name}")
    return problems


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_every_link_resolves(document: Path) -> None:
    assert links(document) or document.name == "README.md", "a documentation page without a single link"
    assert broken_links(document) == []


def test_a_broken_file_link_and_a_broken_anchor_are_found(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "serving.md").write_text((REPO_ROOT / "docs" / "serving.md").read_text())
    probe = tmp_path / "docs" / "probe.md"
    probe.write_text(
        "# Probe\n\n[fine](serving.md#workers---workers-n) [self](#probe) [up](../docs/)\n"
        "[gone](no-such-page.md) [anchor](serving.md#no-such-heading) `[code](ignored.md)`\n"
        "```\n[in a fence](ignored-too.md)\n```\n[out](../../elsewhere.md)\n"
    )
    problems = broken_links(probe, root=tmp_path)
    assert [problem.split(": ", 2)[1] for problem in problems] == [
        "no-such-page.md",
        "serving.md#no-such-heading",
        "../../elsewhere.md",
    ]


@pytest.mark.parametrize(
    ("heading", "slug"),
    [
        ("Workers (`--workers N`)", "workers---workers-n"),
        ("seqserve.v1", "seqservev1"),
        ("KServe V2 (Open Inference Protocol) over gRPC", "kserve-v2-open-inference-protocol-over-grpc"),
        ("Start-up, readiness, shutdown", "start-up-readiness-shutdown"),
        ("What the [serving](x.md) benchmark *shows*", "what-the-serving-benchmark-shows"),
        ("metric_names and Ünïcode", "metric_names-and-ünïcode"),
    ],
)
def test_github_slugs(heading: str, slug: str) -> None:
    assert github_slug(heading) == slug


def test_readme_is_a_front_door_of_at_most_150_lines() -> None:
    assert len(README.read_text().splitlines()) <= README_MAX_LINES


def test_readme_layout_names_every_top_level_folder() -> None:
    listed = subprocess.run(
        ["git", "ls-files"], cwd=REPO_ROOT, capture_output=True, text=True, check=False
    ).stdout.splitlines()
    if not listed:
        pytest.skip("not a git checkout")
    folders = {path.split("/")[0] for path in listed if "/" in path}
    layout = README.read_text().split("## Layout", 1)[1].split("\n## ", 1)[0]
    missing = sorted(folder for folder in folders if f"`{folder}/" not in layout)
    assert missing == [], "add them to the README's layout table"
    for folder in ("deploy/k8s/", "deploy/kserve/", "reports/", "docs/"):
        assert f"`{folder}" in layout, folder
