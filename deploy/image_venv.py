"""Replay the Dockerfile's virtualenv build on this machine, and measure what each image variant carries.

No Docker engine is needed: the build stages' COPY (filtered by .dockerignore) and RUN instructions run
here, in a directory standing in for the container's file system, with the Dockerfile's own ENV. The
commands are read from the Dockerfile, so what is checked or measured here is what the image installs.

    python -m deploy.image_venv --target runtime --target runtime-tf --dir /tmp/seqserve-images
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = REPO_ROOT / "Dockerfile"
_VARIABLE = re.compile(r"\$(?:\{(\w+)(?::-([^}]*))?\}|(\w+))")


@dataclass(frozen=True)
class Instruction:
    keyword: str  # upper case: RUN, COPY, ENV ...
    flags: dict[str, str]  # leading --name=value options, e.g. {"from": "build"}
    value: str  # the rest of the line, continuations joined


@dataclass
class Stage:
    name: str
    base: str
    instructions: list[Instruction] = field(default_factory=list)


@dataclass(frozen=True)
class Dockerfile:
    global_args: dict[str, str]
    stages: dict[str, Stage]

    def chain(self, target: str) -> list[Stage]:
        """The stage and the stages it is built FROM, oldest first."""
        stages: list[Stage] = []
        name: str | None = target
        while name is not None:
            stage = self.stages[name]
            stages.insert(0, stage)
            name = stage.base if stage.base in self.stages else None
        return stages

    def instructions(self, target: str, keyword: str) -> list[Instruction]:
        return [i for stage in self.chain(target) for i in stage.instructions if i.keyword == keyword]

    def env(self, target: str, environ: Mapping[str, str] | None = None) -> dict[str, str]:
        """The target image's ENV, each value expanded over what was set before it."""
        env = dict(environ or {})
        for instruction in self.instructions(target, "ENV"):
            env.update(parse_env(instruction.value, env))
        return env

    def exec_form(self, target: str, keyword: str) -> list[str]:
        """The last ENTRYPOINT / CMD of a target (exec form), [] if none."""
        found = self.instructions(target, keyword)
        return json.loads(found[-1].value) if found else []

    def command(self, target: str) -> list[str]:
        return self.exec_form(target, "ENTRYPOINT") + self.exec_form(target, "CMD")

    def healthcheck(self, target: str) -> list[str]:
        """The HEALTHCHECK's exec-form command."""
        value = self.instructions(target, "HEALTHCHECK")[-1].value
        return json.loads(value.removeprefix("CMD").strip())

    def exposed_ports(self, target: str) -> set[int]:
        return {
            int(port.split("/")[0]) for i in self.instructions(target, "EXPOSE") for port in i.value.split()
        }

    def venv_stage(self, target: str) -> str:
        """The build stage whose virtualenv the target copies in (COPY --from=<stage> $VIRTUAL_ENV)."""
        venv = self.env(target)["VIRTUAL_ENV"]
        for instruction in self.instructions(target, "COPY"):
            if "from" in instruction.flags and shlex.split(instruction.value)[0] == venv:
                return instruction.flags["from"]
        raise LookupError(f"target {target} copies no virtualenv {venv}")


def expand(text: str, variables: Mapping[str, str]) -> str:
    """Dockerfile variable substitution: $NAME, ${NAME}, ${NAME:-default}."""

    def value(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(3)
        return variables.get(name) or (match.group(2) or "")

    return _VARIABLE.sub(value, text)


def parse_env(value: str, variables: Mapping[str, str]) -> dict[str, str]:
    """ENV A=1 B="two" -> {"A": "1", "B": "two"}, each expanded over what came before."""
    env: dict[str, str] = {}
    for token in shlex.split(value):
        name, _, raw = token.partition("=")
        env[name] = expand(raw, {**variables, **env})
    return env


def _logical_lines(text: str) -> Iterable[str]:
    current: list[str] = []
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            current.append(stripped[:-1].strip())
            continue
        current.append(stripped)
        yield " ".join(current)
        current = []


def parse_dockerfile(path: Path = DOCKERFILE) -> Dockerfile:
    global_args: dict[str, str] = {}
    stages: dict[str, Stage] = {}
    stage: Stage | None = None
    for line in _logical_lines(path.read_text()):
        keyword, _, rest = line.partition(" ")
        keyword = keyword.upper()
        flags: dict[str, str] = {}
        while rest.startswith("--"):
            flag, _, rest = rest.partition(" ")
            name, _, value = flag[2:].partition("=")
            flags[name] = value
            rest = rest.strip()
        if keyword == "FROM":
            base, _, name = rest.partition(" AS ")
            stage = Stage(name=name.strip(), base=expand(base.strip(), global_args))
            stages[stage.name] = stage
        elif stage is None:
            if keyword == "ARG":
                name, _, default = rest.partition("=")
                global_args[name] = default
        else:
            stage.instructions.append(Instruction(keyword, flags, rest))
    return Dockerfile(global_args, stages)


def read_dockerignore(context: Path) -> list[tuple[bool, re.Pattern[str]]]:
    """(excludes, pattern) rules in order; the last one that matches a path (or a parent) decides."""
    rules = []
    ignore = context / ".dockerignore"
    lines = ignore.read_text().splitlines() if ignore.exists() else []
    for line in (raw.strip() for raw in lines):
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        rules.append((not negated, _glob_regex(line.lstrip("!").strip("/"))))
    return rules


def _glob_regex(pattern: str) -> re.Pattern[str]:
    """Docker's path globs: `**/` any directories (or none), `*` and `?` within one name, `[...]` sets."""
    parts, i = [], 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            parts.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            parts.append(".*")
            i += 2
        elif pattern[i] == "*":
            parts.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            parts.append("[^/]")
            i += 1
        elif pattern[i] == "[" and "]" in pattern[i:]:
            end = pattern.index("]", i)
            parts.append(pattern[i : end + 1])
            i = end + 1
        else:
            parts.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(parts))


def is_ignored(relative: str, rules: list[tuple[bool, re.Pattern[str]]]) -> bool:
    parts = relative.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    ignored = False
    for excludes, pattern in rules:
        if any(pattern.fullmatch(prefix) for prefix in prefixes):
            ignored = excludes
    return ignored


def _copy_from_context(
    sources: list[str], destination: Path, context: Path, rules: list[tuple[bool, re.Pattern[str]]]
) -> None:
    for source in sources:
        source_path = context / source
        files = [source_path] if source_path.is_file() else sorted(source_path.rglob("*"))
        for file in files:
            relative = file.relative_to(context).as_posix()
            if not file.is_file() or is_ignored(relative, rules):
                continue
            target = (
                destination / file.name
                if source_path.is_file()
                else destination / file.relative_to(source_path)
            )
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(file, target)


def replay_venv(
    target: str, root: Path, dockerfile: Dockerfile | None = None, context: Path = REPO_ROOT
) -> Path:
    """Build the virtualenv that `target` copies in, under `root`; returns the virtualenv's path.

    Container paths map to paths under `root`; VIRTUAL_ENV is relocated there. RUN commands run in
    bash with the stage's ENV over this process's PATH (whose python and pip stand in for the base
    image's), and their --mount flags (pip's cache) are dropped: pip's cache here is used as it is.
    """
    dockerfile = dockerfile or parse_dockerfile()
    rules = read_dockerignore(context)
    venv = root / "opt" / "seqserve"
    host_path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    env: dict[str, str] = {"PATH": host_path, "HOME": os.environ.get("HOME", "/root")}
    cwd = root
    for stage in dockerfile.chain(dockerfile.venv_stage(target)):
        for instruction in stage.instructions:
            if instruction.keyword == "ENV":
                env.update(parse_env(instruction.value, env))
                env["VIRTUAL_ENV"] = str(venv)
                env["PATH"] = expand(f"{venv}/bin:{host_path}", env)
            elif instruction.keyword == "WORKDIR":
                cwd = root / instruction.value.lstrip("/")
                cwd.mkdir(parents=True, exist_ok=True)
            elif instruction.keyword == "COPY":
                *sources, destination = shlex.split(expand(instruction.value, env))
                base = root if destination.startswith("/") else cwd
                _copy_from_context(sources, base / destination.lstrip("/"), context, rules)
            elif instruction.keyword == "RUN":
                subprocess.run(["bash", "-euc", instruction.value], cwd=cwd, env=env, check=True)
    return venv


def site_packages(venv: Path) -> Path:
    return next(venv.glob("lib/python3*/site-packages"))


def tree_bytes(path: Path) -> int:
    return sum(file.lstat().st_size for file in path.rglob("*") if file.is_file() or file.is_symlink())


def top_entries(path: Path, count: int) -> list[tuple[str, int]]:
    sizes = [
        (entry.name, tree_bytes(entry) if entry.is_dir() else entry.stat().st_size)
        for entry in path.iterdir()
    ]
    return sorted(sizes, key=lambda item: -item[1])[:count]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--target", action="append", required=True, help="Dockerfile target; repeatable")
    parser.add_argument(
        "--dir", type=Path, required=True, help="work directory (one subdirectory per target)"
    )
    parser.add_argument(
        "--top", type=int, default=8, help="largest site-packages entries to list [%(default)s]"
    )
    args = parser.parse_args(argv)
    dockerfile = parse_dockerfile()
    for target in args.target:
        root = args.dir / target
        shutil.rmtree(root, ignore_errors=True)
        packages = site_packages(replay_venv(target, root, dockerfile))
        tensorflow = (packages / "tensorflow").is_dir()
        print(f"{target}: site-packages {tree_bytes(packages) / 2**20:.0f} MiB, tensorflow: {tensorflow}")
        for name, size in top_entries(packages, args.top):
            print(f"  {size / 2**20:7.1f} MiB  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
