"""The generated gRPC/protobuf code in seqserve/v1 is exactly what `make protos` makes from protos/."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
PROTOS = REPO_ROOT / "protos"
GENERATED = REPO_ROOT / "seqserve" / "v1"


def makefile_output_flags(out_dir: Path) -> list[str]:
    """The `--*_out=.` flags of the Makefile's protos target, pointed at `out_dir`."""
    command = re.search(r"grpc_tools\.protoc ([^\n]*)", (REPO_ROOT / "Makefile").read_text())
    assert command, "the Makefile's protos target no longer runs grpc_tools.protoc"
    flags = [flag for flag in command.group(1).split() if flag.startswith("--") and flag.endswith("_out=.")]
    assert flags, "no output flags found in the Makefile's protoc command"
    return [flag[:-1] + str(out_dir) for flag in flags]


def test_generated_code_matches_the_proto_files(tmp_path: Path) -> None:
    sources = sorted(str(path) for path in (PROTOS / "seqserve" / "v1").glob("*.proto"))
    # a process of its own, as `make protos` runs it: protoc inside a test process that has loaded
    # TensorFlow's protobuf runtime crashes
    command = [sys.executable, "-m", "grpc_tools.protoc", f"-I{PROTOS}", *makefile_output_flags(tmp_path)]
    subprocess.run([*command, *sources], check=True, timeout=60)
    fresh = tmp_path / "seqserve" / "v1"
    generated = sorted(path.name for path in fresh.iterdir())
    committed = sorted(path.name for path in GENERATED.glob("*_pb2*"))
    assert generated == committed
    for name in generated:
        stale = f"seqserve/v1/{name} differs from what protoc makes: run `make protos`"
        assert (fresh / name).read_bytes() == (GENERATED / name).read_bytes(), stale


def test_tensorflow_serving_stubs_match_what_the_makefile_generates(tmp_path: Path) -> None:
    """seqserve/tfs is what protos/tfserving_stubs.py makes from the pinned wheel and the installed
    TensorFlow (`make protos`); its own modules (__init__, pool) are not generated."""
    stubs = REPO_ROOT / "seqserve" / "tfs"
    command = re.search(r"python (protos/tfserving_stubs\.py[^\n]*)", (REPO_ROOT / "Makefile").read_text())
    assert command, "the Makefile's protos target no longer runs protos/tfserving_stubs.py"
    subprocess.run(
        [sys.executable, str(REPO_ROOT / "protos" / "tfserving_stubs.py"), "--out", str(tmp_path)],
        check=True,
        timeout=180,
    )
    generated = sorted(str(path.relative_to(tmp_path)) for path in tmp_path.rglob("*") if path.is_file())
    hand_written = {"__init__.py", "pool.py"}
    committed = sorted(
        str(path.relative_to(stubs))
        for path in stubs.rglob("*")
        if path.is_file()
        and "__pycache__" not in path.parts
        and str(path.relative_to(stubs)) not in hand_written
    )
    assert generated == committed
    for name in generated:
        stale = f"seqserve/tfs/{name} differs from what protos/tfserving_stubs.py makes: run `make protos`"
        assert (tmp_path / name).read_bytes() == (stubs / name).read_bytes(), stale
