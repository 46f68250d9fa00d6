"""Generates seqserve/tfs: TensorFlow Serving's gRPC API (PredictionService, ModelService) as Python stubs
that need no TensorFlow (`make protos` runs this).

TensorFlow Serving publishes its API as the `tensorflow-serving-api` wheel: *_pb2.py modules that
import TensorFlow's own (`tensorflow.core.framework.tensor_pb2`, ...), and that wheel requires the
`tensorflow` distribution, which cannot sit beside `tensorflow-cpu`. Neither wheel ships .proto files,
but every *_pb2.py embeds its file's serialized FileDescriptorProto. So:

1. `pip download --no-deps` the pinned `tensorflow-serving-api` wheel (its SHA-256 is checked) and read
   the descriptors of `tensorflow_serving/**.proto` out of its *_pb2.py files;
2. read the descriptors of `tensorflow/**.proto` and `xla/**.proto` out of the installed
   `tensorflow-cpu` distribution's *_pb2.py files, and of `google/protobuf/*.proto` from the protobuf
   runtime. Modules are parsed (`ast`), never imported or executed;
3. write the dependency closure of prediction_service.proto and model_service.proto as one
   FileDescriptorSet and run `grpc_tools.protoc --descriptor_set_in` on it (.py, .pyi, and _grpc.py for
   the two service files);
4. move the output under seqserve/tfs/ with two rewrites: imports of `tensorflow`, `tensorflow_serving`
   and `xla` become imports of `seqserve.tfs.<same>`, and files are added to seqserve.tfs.pool's
   private descriptor pool instead of the default one (why: seqserve/tfs/__init__.py).

Proto package names and file names stay TensorFlow Serving's, so the wire format and the method paths
(`/tensorflow.serving.PredictionService/Predict`) are exactly TF Serving's.
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import importlib
import importlib.metadata
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from google.protobuf import descriptor_pb2

TFS_API_VERSION = "2.21.0"
TFS_API_WHEEL = f"tensorflow_serving_api-{TFS_API_VERSION}-py2.py3-none-any.whl"
TFS_API_SHA256 = "8f0c45be6e1a9c034dd3be63d73d09b1a899cf5a66d9caa1d557f137c2eff51d"
TENSORFLOW_DISTRIBUTION = "tensorflow-cpu"
SERVICES = ("tensorflow_serving/apis/prediction_service.proto", "tensorflow_serving/apis/model_service.proto")
# Top-level Python packages of the generated code, moved under seqserve.tfs.
PACKAGES = ("tensorflow_serving", "tensorflow", "xla")
TARGET_PACKAGE = "seqserve.tfs"
_IMPORT = re.compile(rf"^(\s*)(from|import) ({'|'.join(PACKAGES)})([. ])", re.MULTILINE)
_DEFAULT_POOL = "_descriptor_pool.Default().AddSerializedFile("
_POOL_IMPORT = "from google.protobuf import descriptor_pool as _descriptor_pool\n"


def serialized_descriptor(source: str | bytes, where: str) -> bytes | None:
    """The FileDescriptorProto a *_pb2.py module adds to its pool, without running the module."""
    for node in ast.walk(ast.parse(source)):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "AddSerializedFile"
        ):
            argument = node.args[0]
            if not (isinstance(argument, ast.Constant) and isinstance(argument.value, bytes)):
                raise SystemExit(f"{where}: AddSerializedFile is not given a bytes literal")
            return argument.value
    return None


def add_descriptor(files: dict[str, descriptor_pb2.FileDescriptorProto], data: bytes, where: str) -> None:
    proto = descriptor_pb2.FileDescriptorProto.FromString(data)
    known = files.get(proto.name)
    if known is not None and known != proto:
        raise SystemExit(f"{where}: a different {proto.name} was already read")
    files[proto.name] = proto


def download_api_wheel(directory: Path) -> Path:
    subprocess.run(
        [
            sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
            "--dest", str(directory), f"tensorflow-serving-api=={TFS_API_VERSION}",
        ],
        check=True,
    )  # fmt: skip
    return directory / TFS_API_WHEEL


def check_wheel(wheel: Path) -> Path:
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    if digest != TFS_API_SHA256:
        raise SystemExit(f"{wheel} has SHA-256 {digest}, expected {TFS_API_SHA256} ({TFS_API_WHEEL})")
    return wheel


def api_descriptors(wheel: Path) -> dict[str, descriptor_pb2.FileDescriptorProto]:
    files: dict[str, descriptor_pb2.FileDescriptorProto] = {}
    with zipfile.ZipFile(wheel) as archive:
        for name in archive.namelist():
            if name.endswith("_pb2.py"):
                data = serialized_descriptor(archive.read(name), name)
                if data is not None:
                    add_descriptor(files, data, f"{wheel.name}:{name}")
    return files


def tensorflow_descriptors() -> dict[str, descriptor_pb2.FileDescriptorProto]:
    distribution = importlib.metadata.distribution(TENSORFLOW_DISTRIBUTION)
    files: dict[str, descriptor_pb2.FileDescriptorProto] = {}
    for path in distribution.files or ():
        if path.name.endswith("_pb2.py") and path.parts[0] == "tensorflow":
            source = Path(str(distribution.locate_file(path))).read_bytes()
            data = serialized_descriptor(source, str(path))
            if data is not None:
                add_descriptor(files, data, str(path))
    return files


def well_known_descriptor(name: str) -> bytes:
    """google/protobuf/any.proto -> the protobuf runtime's google.protobuf.any_pb2 descriptor."""
    module = importlib.import_module(name.removesuffix(".proto").replace("/", ".") + "_pb2")
    return module.DESCRIPTOR.serialized_pb


def closure(
    files: dict[str, descriptor_pb2.FileDescriptorProto], roots: tuple[str, ...]
) -> list[descriptor_pb2.FileDescriptorProto]:
    """The roots and everything they import, dependencies first (the order a FileDescriptorSet needs)."""
    ordered: list[descriptor_pb2.FileDescriptorProto] = []
    seen: set[str] = set()

    def visit(name: str) -> None:
        if name in seen:
            return
        seen.add(name)
        if name not in files:
            if not name.startswith("google/protobuf/"):
                raise SystemExit(f"no descriptor of {name}: neither the API wheel nor TensorFlow has it")
            add_descriptor(files, well_known_descriptor(name), name)
        for dependency in files[name].dependency:
            visit(dependency)
        ordered.append(files[name])

    for root in roots:
        visit(root)
    return ordered


def rewrite(text: str) -> str:
    """Imports of the generated packages go to seqserve.tfs; descriptors go to its private pool."""
    text = _IMPORT.sub(rf"\1\2 {TARGET_PACKAGE}.\3\4", text)
    if _DEFAULT_POOL in text:
        text = text.replace(_POOL_IMPORT, f"from {TARGET_PACKAGE} import pool as _tfs_pool\n", 1)
        text = text.replace(_DEFAULT_POOL, "_tfs_pool.add_serialized_file(")
    for package in PACKAGES:
        # the module name the generated message classes report
        text = text.replace(f"DESCRIPTOR, '{package}.", f"DESCRIPTOR, '{TARGET_PACKAGE}.{package}.")
    return text


def generate(out: Path, wheel: Path | None) -> None:
    with tempfile.TemporaryDirectory(prefix="tfs-stubs-") as temporary:
        work = Path(temporary)
        wheel = check_wheel(wheel or download_api_wheel(work))
        files = {**tensorflow_descriptors(), **api_descriptors(wheel)}
        selected = closure(files, SERVICES)
        descriptor_set = work / "tensorflow_serving.binpb"
        descriptor_set.write_bytes(descriptor_pb2.FileDescriptorSet(file=selected).SerializeToString())
        generated = work / "generated"
        generated.mkdir()
        protoc = [sys.executable, "-m", "grpc_tools.protoc", f"--descriptor_set_in={descriptor_set}"]
        names = [proto.name for proto in selected if not proto.name.startswith("google/protobuf/")]
        subprocess.run([*protoc, f"--python_out={generated}", f"--pyi_out={generated}", *names], check=True)
        subprocess.run([*protoc, f"--grpc_python_out={generated}", *SERVICES], check=True)
        for package in PACKAGES:
            shutil.rmtree(out / package, ignore_errors=True)
        for source in sorted(generated.rglob("*.py*")):
            relative = source.relative_to(generated)
            target = out / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(rewrite(source.read_text()))
        for directory in sorted({p.parent for p in out.rglob("*_pb2.py")}):
            while directory != out:  # regular packages, so that every installer ships them
                (directory / "__init__.py").touch()
                directory = directory.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("seqserve/tfs"), help="the seqserve.tfs package")
    parser.add_argument("--wheel", type=Path, help=f"a downloaded {TFS_API_WHEEL} (default: pip download)")
    arguments = parser.parse_args()
    generate(arguments.out, arguments.wheel)


if __name__ == "__main__":
    main()
