"""`seqserve serve` whose Python allocations tracemalloc follows on request: the soak's memory probe.

    python -m bench.traced_server serve --model-repository models [serve flags]

runs the `seqserve` command in this process, as `python -m seqserve.cli` does, and reads commands from
its stdin, one a line. Each gets one line `seqserve-tracemalloc {json}` on stdout:

- `start FRAMES`: tracemalloc.start(FRAMES). Nothing is traced before it, so the run up to then costs
  tracemalloc neither memory nor CPU;
- `memory`: {"tracing", "traced_bytes", "tracemalloc_bytes", "malloc_heap_bytes",
  "malloc_mmapped_bytes", "malloc_free_bytes"}: what the traced blocks hold; what tracemalloc's own
  tables take (resident memory of the process that is not the server's); and glibc's malloc
  (mallinfo2), native memory that tracemalloc does not see (C code such as gRPC's and ONNX Runtime's,
  and Python's objects above 512 bytes): heap chunks in use, blocks of 128 KiB and more mmapped apart
  (ONNX Runtime's arena regions among them), and heap freed but kept by the process (null without
  glibc);
- `snapshot PATH`: a tracemalloc.Snapshot dumped to PATH (tracemalloc.Snapshot.load reads it back),
  {"path"}. A forked child takes and writes it: a snapshot is a Python object per traced
  block, and taken in the server it would enlarge the server's own heap, and its RSS, in the middle
  of the measurement.

A command that fails is answered {"error": "..."}. serving/ knows nothing of this; it covers one
server process (`--workers` start others).
"""

from __future__ import annotations

import ctypes
import json
import os
import subprocess
import sys
import threading
import tracemalloc
from collections.abc import Iterable
from pathlib import Path
from typing import IO

from seqserve.cli import main as seqserve_main

REPLY_PREFIX = "seqserve-tracemalloc "
SNAPSHOT_EXIT_FAILED = 3


class ProbeError(RuntimeError):
    """The traced server refused a command, or ended without answering it."""


def answer(command: str) -> dict[str, object]:
    """One command's reply (see the module's docstring)."""
    name, _, argument = command.strip().partition(" ")
    try:
        if name == "start":
            tracemalloc.start(int(argument))
            return {"tracing": True}
        if name == "memory":
            traced, _peak = tracemalloc.get_traced_memory()
            return {
                "tracing": tracemalloc.is_tracing(),
                "traced_bytes": traced,
                "tracemalloc_bytes": tracemalloc.get_tracemalloc_memory(),
                **malloc_bytes(),
            }
        if name == "snapshot":
            _dump_snapshot(Path(argument))
            return {"path": argument}
    except (ValueError, RuntimeError, OSError) as error:
        return {"error": f"{command.strip()}: {error}"}
    return {"error": f"unknown command {command.strip()!r}: send start FRAMES, memory or snapshot PATH"}


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


MALLOC_FIELDS = {
    "malloc_heap_bytes": "uordblks",
    "malloc_mmapped_bytes": "hblkhd",
    "malloc_free_bytes": "fordblks",
}


def malloc_bytes() -> dict[str, int | None]:
    """glibc's malloc over all its arenas (see the module's docstring)."""
    mallinfo2 = getattr(ctypes.CDLL(None), "mallinfo2", None)
    if mallinfo2 is None:
        return dict.fromkeys(MALLOC_FIELDS)
    mallinfo2.restype = _MallInfo2
    info = mallinfo2()
    return {key: getattr(info, field) for key, field in MALLOC_FIELDS.items()}


def _dump_snapshot(path: Path) -> None:
    """Take and write the snapshot in a forked child."""
    if not tracemalloc.is_tracing():
        raise RuntimeError("tracemalloc is not tracing: send `start FRAMES` first")
    child = os.fork()
    if child == 0:  # the child: only this thread, a copy of the heap; it never returns to the server
        status = SNAPSHOT_EXIT_FAILED
        try:
            tracemalloc.take_snapshot().dump(str(path))
            status = 0
        finally:
            os._exit(status)
    _, wait_status = os.waitpid(child, 0)
    code = os.waitstatus_to_exitcode(wait_status)
    if code != 0:
        raise RuntimeError(f"the child writing the snapshot ended with status {code}")


def follow(commands: Iterable[str], replies: IO[str]) -> None:
    """Answer each command line until the input ends."""
    for command in commands:
        if command.strip():
            replies.write(REPLY_PREFIX + json.dumps(answer(command)) + "\n")
            replies.flush()


class MemoryProbe:
    """The soak's side: commands to a traced server started with stdin and stdout as pipes."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        assert process.stdin is not None and process.stdout is not None
        self._stdin = process.stdin
        self._stdout = process.stdout

    def ask(self, command: str) -> dict:
        """Send one command, return its reply; lines the server prints meanwhile are skipped."""
        self._stdin.write(command + "\n")
        self._stdin.flush()
        for line in self._stdout:
            if line.startswith(REPLY_PREFIX):
                reply = json.loads(line[len(REPLY_PREFIX) :])
                if "error" in reply:
                    raise ProbeError(reply["error"])
                return reply
        raise ProbeError(f"the server ended before answering {command!r}")


def main(argv: list[str] | None = None) -> int:
    threading.Thread(
        target=follow, args=(sys.stdin, sys.stdout), name="tracemalloc-probe", daemon=True
    ).start()
    return seqserve_main(argv)


if __name__ == "__main__":
    sys.exit(main())
