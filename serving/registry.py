"""Which model versions are loaded and ready, and how a (name, version) request finds one.

The registry publishes an immutable `RegistrySnapshot`; request handlers read `registry.snapshot`
without locks, and every change (load, unload) builds a new snapshot and swaps it in one assignment.
A version enters a snapshot only after it is loaded and warmed up, and leaves it before its batcher
drains, so a request can never reach a half-loaded or closing model. `load(name)` reloads a model
(picking up new versions, dropping removed ones) and `unload(name)` removes it: the building blocks for
repository polling and the KServe V2 repository extension.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import threading
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING

from tokenizers import Tokenizer

from seqserve.v1 import model_config_pb2
from serving.batcher import Batcher, BatchPolicy
from serving.explain import Explainer, ExplainUnsupported, WordSplitter
from serving.inference_pool import InferencePool
from serving.metrics import ModelLabels, ServerMetrics
from serving.model import ServedModel
from serving.repository import ModelRepository, validate_model_name
from serving.runtimes import create_runtime
from serving.sequence import SequencePadding, check_graph_axis, check_tokenizer_length
from serving.settings import Settings
from serving.tokenization import TokenizerStore

if TYPE_CHECKING:
    from serving.tracing import ServerTracing

log = logging.getLogger(__name__)

ReadinessListener = Callable[[str, bool], Awaitable[None]]


class Transition(enum.Enum):
    """A version on its way into or out of the snapshot (TF Serving's model status reports it)."""

    LOADING = "loading"
    UNLOADING = "unloading"


class ModelNotFound(LookupError):
    """No loaded model (or version) answers to the requested name."""


@dataclass(frozen=True)
class ModelEntry:
    """The ready versions of one model."""

    name: str
    versions: Mapping[int, ServedModel]

    @property
    def latest(self) -> ServedModel:
        return self.versions[max(self.versions)]


@dataclass(frozen=True)
class RegistrySnapshot:
    models: Mapping[str, ModelEntry] = field(default_factory=lambda: MappingProxyType({}))

    def names(self) -> list[str]:
        return sorted(self.models)

    def resolve(self, name: str, version: int = 0) -> ServedModel:
        """(name, version or 0 = latest) -> ready model; ModelNotFound names what is available."""
        entry = self.models.get(name)
        if entry is None:
            available = ", ".join(self.names()) or "none"
            raise ModelNotFound(f"model {name!r} is not loaded; available models: {available}")
        if version == 0:
            return entry.latest
        if version not in entry.versions:
            loaded = ", ".join(str(v) for v in sorted(entry.versions))
            raise ModelNotFound(f"model {name!r} has no loaded version {version}; loaded versions: {loaded}")
        return entry.versions[version]

    def with_entry(self, name: str, entry: ModelEntry | None) -> RegistrySnapshot:
        models = dict(self.models)
        if entry is None:
            models.pop(name, None)
        else:
            models[name] = entry
        return RegistrySnapshot(MappingProxyType(models))


class ModelRegistry:
    def __init__(
        self,
        repository: ModelRepository,
        settings: Settings,
        metrics: ServerMetrics,
        pool: InferencePool,
        on_readiness: ReadinessListener | None = None,
        tracing: ServerTracing | None = None,
    ) -> None:
        self._repository = repository
        self._tracing = tracing
        self._settings = settings
        self._metrics = metrics
        self._pool = pool
        # loads one version at a time on a thread of its own: never an inference thread's
        self._loader = ThreadPoolExecutor(1, thread_name_prefix="model-load")
        self._on_readiness = on_readiness
        self._tokenizers = TokenizerStore()
        self._splitters: dict[Path, WordSplitter | None] = {}  # None: the tokenizer cannot explain
        self._splitters_lock = threading.Lock()
        self._locks: dict[str, asyncio.Lock] = {}
        self.snapshot = RegistrySnapshot()
        self.failures: dict[str, str] = {}  # "name/version" -> why it did not load
        self.transitions: dict[tuple[str, int], Transition] = {}  # versions loading or draining now

    def resolve(self, name: str, version: int = 0) -> ServedModel:
        if name not in self.snapshot.models:  # a loaded model's name is valid: check only the others
            validate_model_name(name)
        return self.snapshot.resolve(name, version)

    def failed_versions(self, name: str) -> dict[int, str]:
        """Versions of a model whose last load failed, with the reason."""
        prefix = f"{name}/"
        return {int(key[len(prefix) :]): why for key, why in self.failures.items() if key.startswith(prefix)}

    def repository_models(self) -> list[str]:
        """Every model the repository holds, loaded or not (the KServe V2 repository index)."""
        return self._repository.model_names()

    async def load_all(self) -> None:
        for name in self._repository.model_names():
            await self.load(name)

    async def load(self, name: str) -> ModelEntry | None:
        """Load (or reload) the selected versions of a model.

        Versions already loaded and still selected are kept as they are; versions no longer selected
        are retired after the new ones are ready. If no selected version loads, the model keeps
        serving the versions it had: a broken new export never takes a working model down.
        """
        async with self._locks.setdefault(name, asyncio.Lock()):
            wanted = self.select_versions(self._repository.versions(name))
            for version in set(self.failed_versions(name)) - set(wanted):  # removed or no longer selected
                del self.failures[f"{name}/{version}"]
            current = self.snapshot.models.get(name)
            kept = {v: m for v, m in (current.versions.items() if current else ()) if v in wanted}
            loaded = dict(kept)
            for version in wanted:
                if version not in loaded:
                    self.transitions[name, version] = Transition.LOADING
                    try:
                        model = await self._load_version(name, version)
                    finally:
                        del self.transitions[name, version]
                    if model is not None:
                        loaded[version] = model
            if not loaded and current is not None:
                # none of the wanted versions came up: keep serving what already works
                log.warning(
                    "keeping loaded versions", extra={"model": name, "versions": sorted(current.versions)}
                )
                loaded = dict(current.versions)
            entry = ModelEntry(name, MappingProxyType(loaded)) if loaded else None
            self.snapshot = self.snapshot.with_entry(name, entry)
            retired = [m for v, m in (current.versions.items() if current else ()) if v not in loaded]
            await self._retire(retired)
            await self._notify(name, entry is not None)
            return entry

    async def unload(self, name: str) -> None:
        async with self._locks.setdefault(name, asyncio.Lock()):
            current = self.snapshot.models.get(name)
            self.snapshot = self.snapshot.with_entry(name, None)
            await self._notify(name, False)
            if current is not None:
                await self._retire(list(current.versions.values()))

    async def close(self) -> None:
        for name in self.snapshot.names():
            await self.unload(name)
        self._loader.shutdown(wait=False)

    def select_versions(self, versions: list[int]) -> list[int]:
        """The versions to serve out of those in the repository (--load-versions)."""
        count = self._settings.load_versions
        return versions if count == 0 else versions[-count:]

    async def _load_version(self, name: str, version: int) -> ServedModel | None:
        try:  # on a thread of its own: loads never take an inference thread
            model = await asyncio.get_running_loop().run_in_executor(self._loader, self._build, name, version)
        except Exception as error:  # whatever breaks one version's load (ONNX Runtime raises untyped
            # errors for a model its config does not fit) must leave it out, never stop the server
            self.failures[f"{name}/{version}"] = str(error)
            log.error(
                "model version failed to load", extra={"model": name, "version": version, "error": str(error)}
            )
            return None
        self.failures.pop(f"{name}/{version}", None)
        model.batcher = Batcher(
            model,
            self._batch_policy(model.config),
            self._pool,
            observer=model.metrics,
            name=f"{name}/{version}",
            tracing=model.tracing,
        )
        model.metrics.watch_queue(model.batcher)
        model.metrics.set_ready(True)
        log.info(
            "model version ready",
            extra={"model": name, "version": version, "runtime": model.runtime.name},
        )
        return model

    def _build(self, name: str, version: int) -> ServedModel:
        """Blocking part of a load (runs on a thread): files, tokenizer, runtime, the sequence
        contract (serving.sequence), warm-up."""
        source = self._repository.read_version(name, version)
        config = source.config
        tokenizer_path = self._repository.resolve_file(config.tokenizer.path)
        encoder = self._tokenizers.get(tokenizer_path, config.tokenizer.sha256)
        padding = SequencePadding.of(config)
        check_tokenizer_length(config, encoder.length)
        runtime_name = config.serving.runtime or self._settings.runtime
        runtime = create_runtime(runtime_name, source.directory, config, self._settings.intra_op_threads)
        check_graph_axis(config, runtime.fixed_sequence_length, runtime.source)
        labels = ModelLabels(name, str(version), runtime.name)
        model = ServedModel(config, encoder, padding, runtime, self._metrics.for_model(labels))
        if self._tracing is not None:
            model.tracing = self._tracing.batches
        splitter = self._word_splitter(tokenizer_path)
        if splitter is not None:
            model.explainer = Explainer(splitter, padding, runtime, config.labels)
        model.warm_up(sorted({1, self._batch_policy(config).max_batch_size}))
        return model

    def _word_splitter(self, tokenizer_path: Path) -> WordSplitter | None:
        """One per tokenizer file (its SHA-256 was checked by the encoder's store)."""
        with self._splitters_lock:
            if tokenizer_path not in self._splitters:
                try:
                    splitter: WordSplitter | None = WordSplitter(Tokenizer.from_file(str(tokenizer_path)))
                except ExplainUnsupported:
                    splitter = None
                self._splitters[tokenizer_path] = splitter
            return self._splitters[tokenizer_path]

    def _batch_policy(self, config: model_config_pb2.ModelConfig) -> BatchPolicy:
        serving = config.serving
        delay_us = (
            serving.max_queue_delay_us
            if serving.HasField("max_queue_delay_us")
            else self._settings.max_queue_delay_us
        )
        return BatchPolicy(
            max_batch_size=serving.max_batch_size or self._settings.max_batch_size,
            max_queue_delay_s=delay_us / 1e6,
            max_queue_size=self._settings.max_queue_size,
            max_concurrent_batches=self._settings.inference_threads,
            inline_max_items=self._settings.inline_max_texts,
        )

    async def _retire(self, models: list[ServedModel]) -> None:
        """Finish what was queued for versions that left the snapshot, then drop their series."""
        for model in models:
            model.metrics.set_ready(False)
            self.transitions[model.name, model.version] = Transition.UNLOADING
            try:
                if model.batcher is not None:
                    await model.batcher.close()
            finally:
                del self.transitions[model.name, model.version]
            model.metrics.remove()

    async def _notify(self, name: str, ready: bool) -> None:
        if self._on_readiness is not None:
            await self._on_readiness(name, ready)
