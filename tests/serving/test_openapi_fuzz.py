"""Schemathesis against a live server, driven by the server's own /openapi.json: every operation, with
positive and negative cases (generated from the document, and its examples), a fixed seed, at most
MAX_EXAMPLES fuzzed cases per operation and phase, and four checks on every answer: no server error,
the status is documented, the body conforms to its schema, the content type is documented.

The server has a version label, so the label routes have a request that succeeds too. Its model
control is the default: load and unload answer 403, since a fuzzer that unloads the served models
(schemathesis reuses model names it read in answers) leaves the other operations nothing to answer
with (tests/serving/test_kserve_v2.py loads and unloads for real). A failure is fixed in the server or
in the document, whichever is wrong; nothing here silences one.

Cases per operation: an operation with parameters or a body gets at least MIN_CASES; one without (a
health check, GET /v2) has only one distinct request, which schemathesis sends with the coverage
phase's unexpected methods and content type, and then stops (the input space is exhausted).
"""

from __future__ import annotations

import collections
import json
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.serving.server_process import ServerProcess

CHECKS = "not_a_server_error,status_code_conformance,response_schema_conformance,content_type_conformance"
SEED = 20261205
MAX_EXAMPLES = 100
MIN_CASES = 100
# A request without inputs: itself, seven methods it does not allow, and a malformed content type.
CASES_WITHOUT_INPUTS = 9
SCHEMATHESIS = str(Path(sys.executable).parent / "st")
RUN_TIMEOUT_S = 280
# The operations in two processes at once (generating cases costs more CPU than answering them).
PARTS = (("--include-path-regex", "^/v2"), ("--exclude-path-regex", "^/v2"))


@pytest.fixture(scope="module")
def fuzzed_server(tiny_model_repository, tmp_path_factory) -> Iterator[ServerProcess]:
    logs = tmp_path_factory.mktemp("fuzzed-server")
    with ServerProcess(tiny_model_repository, logs, "--version-labels", "sarcasm-gru:stable=1") as process:
        yield process


def cases_per_operation(report: Path) -> dict[str, collections.Counter[str]]:
    """'METHOD /path' -> the number of cases per generation mode, from schemathesis' event log."""
    counts: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    for line in report.read_text().splitlines():
        finished = json.loads(line).get("ScenarioFinished")
        if finished is None:
            continue
        recorder = finished["recorder"]
        for case in recorder.get("cases", {}).values():
            counts[recorder["label"]][case["value"]["meta"]["generation"]["mode"]] += 1
    return counts


def schemathesis(server: ServerProcess, part: tuple[str, ...], report: Path) -> list[str]:
    return [
        SCHEMATHESIS, "run", "openapi.json", "--url", server.rest_url, *part,
        "--checks", CHECKS, "--mode", "all", "--phases", "examples,coverage,fuzzing",
        "--max-examples", str(MAX_EXAMPLES), "--seed", str(SEED), "--generation-database", "none",
        # one worker: with two threads, Python 3.11's ast.parse (which hypothesis calls to describe a
        # strategy) fails now and then with "AST constructor recursion depth mismatch"
        "--workers", "1",
        # these judge the generator's own speed, which a busy machine slows, not the server
        "--suppress-health-check", "all",
        "--request-timeout", "30", "--report", "ndjson", "--report-ndjson-path", str(report), "--no-color",
    ]  # fmt: skip


def has_inputs(operation: dict[str, Any]) -> bool:
    return bool(operation.get("parameters") or operation.get("requestBody"))


def test_schemathesis_finds_no_failure_of_the_four_checks(fuzzed_server, tmp_path):
    with urllib.request.urlopen(f"{fuzzed_server.rest_url}/openapi.json", timeout=10) as response:
        document = json.load(response)
    # From a file: schemathesis leaves out the operation it loaded the document from, if it knows it.
    (tmp_path / "openapi.json").write_text(json.dumps(document))
    started = time.monotonic()
    runs: list[tuple[subprocess.Popen[bytes], Path, Path]] = []
    counts: dict[str, collections.Counter[str]] = {}
    try:
        for index, part in enumerate(PARTS):
            log, report = tmp_path / f"schemathesis-{index}.log", tmp_path / f"events-{index}.ndjson"
            with log.open("w") as output:
                command = schemathesis(fuzzed_server, part, report)
                runs.append(
                    (subprocess.Popen(command, cwd=tmp_path, stdout=output, stderr=output), log, report)
                )
        for run, log, report in runs:
            assert run.wait(RUN_TIMEOUT_S) == 0, log.read_text()[-8000:]
            counts |= cases_per_operation(report)
    finally:
        for run, _, _ in runs:
            if run.poll() is None:
                run.kill()
                run.wait()
    seconds = time.monotonic() - started
    described = {
        f"{method.upper()} {path}": operation
        for path, item in document["paths"].items()
        for method, operation in item.items()
    }
    assert set(counts) == set(described)
    table = "\n".join(
        f"{sum(c.values()):5d} {label} ({c['positive']} positive, {c['negative']} negative)"
        for label, c in sorted(counts.items())
    )
    print(f"schemathesis: {sum(sum(c.values()) for c in counts.values())} cases in {seconds:.1f} s\n{table}")
    for label, operation in described.items():
        least = MIN_CASES if has_inputs(operation) else CASES_WITHOUT_INPUTS
        assert sum(counts[label].values()) >= least, (label, counts[label])
        assert counts[label]["positive"] >= 1, label
        if has_inputs(operation):
            assert counts[label]["negative"] >= 1, label
