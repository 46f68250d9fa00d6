"""The registry in-process: version selection, shared tokenizers, refusals, readiness, load/unload."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from google.protobuf import text_format

from serving.inference_pool import InferencePool
from serving.metrics import ServerMetrics
from serving.poller import RepositoryPoller
from serving.registry import ModelNotFound, ModelRegistry
from serving.repository import ModelRepository
from serving.settings import Settings
from tests.serving.reference import read_config
from tests.serving.server_process import REPO_ROOT


def add_version(root: Path, name: str, version: int, **config_changes: str) -> None:
    """Publish a copy of version 1 as `version`, optionally with changed config fields."""
    target = root / name / str(version)
    shutil.copytree(root / name / "1", target)
    config = read_config(root, name)
    config.version = version
    for path, value in config_changes.items():
        message, field = config, path
        if "." in path:
            parent, field = path.split(".")
            message = getattr(config, parent)
        setattr(message, field, value)
    (target / "config.pbtxt").write_text(text_format.MessageToString(config))


@pytest.fixture
def repository(tiny_model_repository: Path, tmp_path: Path) -> Path:
    root = tmp_path / "models"
    shutil.copytree(tiny_model_repository, root)
    add_version(root, "sarcasm-gru", 2)
    return root


def add_broken_version(root: Path) -> None:
    add_version(root, "sarcasm-gru", 3, **{"tokenizer.sha256": "ab" * 32})  # tokenizer changed since


def with_registry(root: Path, test, **settings):
    async def main() -> None:
        events: list[tuple[str, bool]] = []

        async def on_readiness(name: str, ready: bool) -> None:
            events.append((name, ready))

        metrics = ServerMetrics()
        config = Settings(model_repository=root, **settings)
        pool = InferencePool(1)
        registry = ModelRegistry(ModelRepository(root), config, metrics, pool, on_readiness)
        await registry.load_all()
        try:
            await test(registry, events, metrics)
        finally:
            await registry.close()
            pool.close()

    asyncio.run(main())


def test_a_version_whose_tokenizer_changed_is_refused(repository):
    add_broken_version(repository)

    async def body(registry, events, metrics):
        # version 3 is the newest but refused; at start-up nothing else is selected
        assert "SHA-256" in registry.failures["sarcasm-gru/3"]
        assert registry.snapshot.names() == ["sarcasm-flatten"]
        assert ("sarcasm-gru", False) in events
        with pytest.raises(ModelNotFound, match="available models: sarcasm-flatten"):
            registry.resolve("sarcasm-gru")

    with_registry(repository, body, load_versions=1)


def test_reload_with_a_broken_new_version_keeps_serving_the_working_one(repository):
    async def body(registry, events, metrics):
        assert registry.resolve("sarcasm-gru").version == 2
        add_broken_version(repository)
        await registry.load("sarcasm-gru")
        assert "sarcasm-gru/3" in registry.failures
        model = registry.resolve("sarcasm-gru")
        assert model.version == 2
        assert (await model.batcher.submit(["still here"])).rows.shape == (1, 2)
        assert events[-1] == ("sarcasm-gru", True)

    with_registry(repository, body, load_versions=1)


def test_all_versions_share_one_tokenizer_and_latest_answers_by_default(repository):
    async def body(registry, events, metrics):
        assert sorted(registry.snapshot.models["sarcasm-gru"].versions) == [1, 2]
        assert registry.resolve("sarcasm-gru").version == 2
        assert registry.resolve("sarcasm-gru", 1).version == 1
        tokenizers = {
            id(registry.resolve(n, v).encoder)
            for n, v in [("sarcasm-gru", 1), ("sarcasm-gru", 2), ("sarcasm-flatten", 1)]
        }
        assert len(tokenizers) == 1
        with pytest.raises(ModelNotFound, match="loaded versions: 1, 2"):
            registry.resolve("sarcasm-gru", 7)

    with_registry(repository, body, load_versions=0)


def test_unload_and_reload_swap_snapshots_and_track_readiness(repository):
    async def body(registry, events, metrics):
        before = registry.snapshot
        model = registry.resolve("sarcasm-flatten")
        result = await model.batcher.submit(["hello there", "and here"])
        assert result.rows.shape == (2, 2)
        labels = {"model": "sarcasm-flatten", "version": "1", "runtime": "onnx"}
        sample = metrics.registry.get_sample_value
        # the batch, alone: its texts, and its tokenize + runtime time, which is the request's compute
        assert sample("seqserve_compute_texts_total", labels) == 2
        compute = sample("seqserve_compute_seconds_total", labels)
        stages = sample("seqserve_tokenize_duration_seconds_sum", labels) + sample(
            "seqserve_inference_duration_seconds_sum", labels
        )
        assert compute == pytest.approx(stages) == pytest.approx(result.compute_s)
        assert compute > 0
        await registry.unload("sarcasm-flatten")
        assert before.resolve("sarcasm-flatten") is model  # old snapshots stay intact for readers
        with pytest.raises(ModelNotFound):
            registry.resolve("sarcasm-flatten")
        gone = ("seqserve_model_ready", "seqserve_compute_seconds_total", "seqserve_compute_texts_total")
        for name in gone:
            assert sample(name, labels) is None, name  # the unloaded version's series are gone
        await registry.load("sarcasm-flatten")
        assert registry.resolve("sarcasm-flatten") is not model
        assert events[-2:] == [("sarcasm-flatten", False), ("sarcasm-flatten", True)]

    with_registry(repository, body, load_versions=2)


def test_per_model_batching_overrides_include_an_explicit_zero_delay(repository):
    """`max_queue_delay_us: 0` in a config turns batching off for that model, not "use the default"."""
    add_version(repository, "sarcasm-gru", 3)
    config = read_config(repository, "sarcasm-gru", 3)
    config.serving.max_queue_delay_us = 0
    config.serving.max_batch_size = 7
    (repository / "sarcasm-gru" / "3" / "config.pbtxt").write_text(text_format.MessageToString(config))

    async def test(registry, events, metrics):
        overridden = registry.resolve("sarcasm-gru").batcher.policy
        default = registry.resolve("sarcasm-flatten").batcher.policy
        assert (overridden.max_queue_delay_s, overridden.max_batch_size) == (0.0, 7)
        assert default.max_queue_delay_s == pytest.approx(2500 / 1e6)

    with_registry(repository, test, max_queue_delay_us=2500)


def test_stray_version_directories_stop_neither_start_up_nor_polling(repository):
    """'²' is a digit to str.isdigit() but not to int(); '01' is not version 1."""
    shutil.copytree(repository / "sarcasm-gru" / "1", repository / "sarcasm-gru" / "²")
    shutil.copytree(repository / "sarcasm-flatten" / "1", repository / "sarcasm-flatten" / "01")

    async def body(registry, events, metrics):
        assert registry.snapshot.names() == ["sarcasm-flatten", "sarcasm-gru"]
        assert sorted(registry.snapshot.models["sarcasm-gru"].versions) == [1, 2]
        assert sorted(registry.snapshot.models["sarcasm-flatten"].versions) == [1]
        add_version(repository, "sarcasm-flatten", 2)
        await RepositoryPoller(registry, ModelRepository(repository), 60).poll_once()
        assert sorted(registry.snapshot.models["sarcasm-flatten"].versions) == [1, 2]

    with_registry(repository, body, load_versions=0)


def test_unloading_a_version_removes_its_request_counters(repository):
    async def body(registry, events, metrics):
        labels = registry.resolve("sarcasm-flatten").metrics.labels
        metrics.count_request(labels, "OK", 3, "kserve_v2")
        series = {"model": "sarcasm-flatten", "version": "1", "runtime": "onnx"}
        requests = {**series, "code": "OK", "protocol": "kserve_v2"}
        assert metrics.registry.get_sample_value("seqserve_requests_total", requests) == 1
        assert metrics.registry.get_sample_value("seqserve_texts_total", {**series, "code": "OK"}) == 3
        await registry.unload("sarcasm-flatten")
        assert metrics.registry.get_sample_value("seqserve_requests_total", requests) is None
        assert metrics.registry.get_sample_value("seqserve_texts_total", {**series, "code": "OK"}) is None
        await registry.load("sarcasm-flatten")  # counted afresh after a reload
        metrics.count_request(registry.resolve("sarcasm-flatten").metrics.labels, "OK", 1, "kserve_v2")
        assert metrics.registry.get_sample_value("seqserve_requests_total", requests) == 1

    with_registry(repository, body)


@pytest.mark.parametrize("inline_max_texts", [0, 1])
def test_inline_max_texts_decides_whether_a_lone_text_crosses_to_a_thread(repository, inline_max_texts):
    """--inline-max-texts: 0 sends every runtime call to an inference thread; 1 runs a lone text's on
    the loop once the model is known to be fast (a tiny model is)."""
    import threading

    async def body(registry, events, metrics):
        model = registry.resolve("sarcasm-flatten")
        threads: list[int] = []
        execute = model.execute

        def recorded(ids):
            threads.append(threading.get_ident())
            return execute(ids)

        model.execute = recorded
        for _ in range(5):
            await model.batcher.submit(["hello there"])
        on_loop = [thread == threading.get_ident() for thread in threads]
        assert on_loop == ([False] * 5 if inline_max_texts == 0 else [False, True, True, True, True])

    with_registry(repository, body, inline_max_texts=inline_max_texts)


# In a process of its own, so that no other test's threads come and go while they are counted.
THREADS_PROBE = """
import os, sys
from pathlib import Path
from serving.settings import build_settings
from tests.serving.test_registry import with_registry

async def count(registry, events, metrics):
    print(len(os.listdir("/proc/self/task")), len(registry.snapshot.names()))

for flag in ("1", "3"):
    settings = build_settings(["--intra-op-threads", flag], {})
    with_registry(Path(sys.argv[1]), count, intra_op_threads=settings.intra_op_threads)
"""


def test_intra_op_threads_gives_each_onnx_session_its_thread_pool(tiny_model_repository):
    """--intra-op-threads N: ONNX Runtime runs each session's ops on N threads, the caller's and N - 1
    of the session's own; with 1 (the default) it starts none."""
    result = subprocess.run(
        [sys.executable, "-c", THREADS_PROBE, str(tiny_model_repository)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    (one, models), (three, _) = (map(int, line.split()) for line in result.stdout.splitlines())
    assert models == 2 and three - one == models * (3 - 1)
