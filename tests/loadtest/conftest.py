"""A real server subprocess on the tiny model repository, for the load generator to load."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.serving.server_process import ServerProcess


@pytest.fixture(scope="session")
def loadtest_server(
    tiny_model_repository: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    with ServerProcess(tiny_model_repository, tmp_path_factory.mktemp("loadtest-server-logs")) as process:
        yield process
