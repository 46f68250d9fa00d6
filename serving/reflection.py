"""gRPC server reflection over every service of the port, whichever descriptor pool holds its messages.

seqserve.v1, KServe V2 and health live in protobuf's default pool, TF Serving's API in the private
pool of its stubs (seqserve.tfs.pool, for why). grpcio's reflection servicer reads one pool; it is
given both, looked up in turn, so `grpcurl describe tensorflow.serving.PredictionService` works like
any other service.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import grpc
from google.protobuf import descriptor_pool
from grpc_reflection.v1alpha import reflection

from seqserve.tfs.pool import POOL as TFS_POOL


class DescriptorPools:
    """The look-ups the reflection servicer makes, answered by the first pool that knows the name."""

    def __init__(self, *pools: descriptor_pool.DescriptorPool) -> None:
        self._pools = pools

    def _first(self, method: str, *arguments: Any) -> Any:
        for pool in self._pools:
            try:
                return getattr(pool, method)(*arguments)
            except KeyError:
                continue
        raise KeyError(arguments[0])

    def FindFileByName(self, name: str) -> Any:
        return self._first("FindFileByName", name)

    def FindFileContainingSymbol(self, symbol: str) -> Any:
        return self._first("FindFileContainingSymbol", symbol)

    def FindMessageTypeByName(self, name: str) -> Any:
        return self._first("FindMessageTypeByName", name)

    def FindExtensionByNumber(self, message: Any, number: int) -> Any:
        return message.file.pool.FindExtensionByNumber(message, number)

    def FindAllExtensions(self, message: Any) -> Any:
        return message.file.pool.FindAllExtensions(message)


def enable_reflection(server: grpc.aio.Server, services: Sequence[str]) -> None:
    names = (*services, reflection.SERVICE_NAME)
    reflection.enable_server_reflection(names, server, DescriptorPools(TFS_POOL, descriptor_pool.Default()))
