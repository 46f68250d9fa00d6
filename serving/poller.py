"""Repository polling: new versions are loaded, removed ones drained and unloaded, while serving.

Every `--poll-interval` seconds the repository is scanned (in a thread: it is file-system work) and
each model whose selected versions differ from the loaded ones goes through `ModelRegistry.load` (or
`unload` once its directory holds no version). The registry does the safe part: a new version enters
the snapshot only after it loaded and warmed up, a version leaves it before its queue drains, and a
broken new version never takes a working one down.

A version that failed to load is retried only when its files change (size or modification time of
any file), so a broken export is reported once, not every few seconds. Training publishes a version
by renaming a complete staging directory into place; a version copied in file by file may be seen
half-written, fail, and load at the next scan after its files stop changing.
"""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

from serving.registry import ModelRegistry
from serving.repository import ModelRepository, RepositoryError

log = logging.getLogger(__name__)

# (path relative to the version directory, size, mtime in ns) of every file of a version
Fingerprint = tuple[tuple[str, int, int], ...]
# the versions on disk and the fingerprints of the selected ones
ModelState = tuple[tuple[int, ...], tuple[tuple[int, Fingerprint], ...]]


def fingerprint(directory: Path) -> Fingerprint:
    files = []
    for folder, _, names in os.walk(directory):
        for name in names:
            path = Path(folder, name)
            stat = path.stat()
            files.append((str(path.relative_to(directory)), stat.st_size, stat.st_mtime_ns))
    return tuple(sorted(files))


class RepositoryPoller:
    def __init__(self, registry: ModelRegistry, repository: ModelRepository, interval_s: float) -> None:
        self._registry = registry
        self._repository = repository
        self._interval_s = interval_s
        self._attempted: dict[str, ModelState] = {}  # model -> the state its last load attempt saw

    async def run(self) -> None:
        """Scan every interval until cancelled; a failing scan is logged and retried next time."""
        while True:
            await asyncio.sleep(self._interval_s)
            try:
                await self.poll_once()
            except Exception:
                log.exception("repository scan failed")

    def _scan(self) -> dict[str, ModelState | None]:
        """Model name -> its state; None for a model that could not be read this time."""
        states: dict[str, ModelState | None] = {}
        for name in self._repository.model_names():
            try:
                versions = self._repository.versions(name)
                selected = self._registry.select_versions(versions)
                model_dir = self._repository.model_directory(name)
                prints = tuple((v, fingerprint(model_dir / str(v))) for v in selected)
            except (OSError, RepositoryError) as error:  # changing under our feet: next scan
                log.warning("repository scan skipped a model", extra={"model": name, "error": str(error)})
                states[name] = None
                continue
            states[name] = (tuple(versions), prints)
        return states

    async def poll_once(self) -> None:
        states = await asyncio.to_thread(self._scan)
        snapshot = self._registry.snapshot
        for name in snapshot.names():
            if name not in states:
                log.info("model left the repository, unloading", extra={"model": name})
                self._attempted.pop(name, None)
                await self._registry.unload(name)
        for name, state in states.items():
            if state is None:
                continue
            entry = snapshot.models.get(name)
            selected = {version for version, _ in state[1]}
            if entry is not None and set(entry.versions) == selected:
                self._attempted[name] = state
                continue
            if self._attempted.get(name) == state:
                continue  # this exact state was tried and failed: wait for the files to change
            self._attempted[name] = state
            log.info(
                "repository changed, loading",
                extra={
                    "model": name,
                    "versions": sorted(selected),
                    "loaded": sorted(entry.versions) if entry else [],
                },
            )
            await self._registry.load(name)
