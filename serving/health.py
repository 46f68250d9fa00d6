"""grpc.health.v1 with per-model services, and Watch streams that end when shutdown begins.

grpcio-health-checking's servicer keeps Watch streams open forever; a graceful shutdown waits for every
open RPC, so each watching load balancer or probe would hold the process for the whole grace period.
Here, once shutdown starts, every service reports NOT_SERVING, each Watch stream delivers that and
ends, and only real inference requests are left to finish.

Services: "" (the whole server), "seqserve.v1.Classifier", "inference.GRPCInferenceService" (KServe V2),
and one per model name ("sarcasm-lstm"), SERVING while at least one version of that model is loaded
and warm.
"""

from __future__ import annotations

import asyncio
import functools

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

Status = health_pb2.HealthCheckResponse.ServingStatus
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
SERVICE_UNKNOWN = health_pb2.HealthCheckResponse.SERVICE_UNKNOWN


class HealthService(health_pb2_grpc.HealthServicer):
    def __init__(self) -> None:
        self._status: dict[str, Status] = {}
        self._changed = asyncio.Condition()
        self._shutting_down = False

    async def set(self, service: str, status: Status) -> None:
        async with self._changed:
            if not self._shutting_down:
                self._status[service] = status
                self._changed.notify_all()

    async def shutdown(self) -> None:
        """Everything NOT_SERVING from now on; open Watch streams report it and end."""
        async with self._changed:
            self._shutting_down = True
            for service in self._status:
                self._status[service] = NOT_SERVING
            self._changed.notify_all()

    def status(self, service: str) -> Status:
        """The current status of a service, for other protocols' readiness calls (KServe V2)."""
        return self._status.get(service, SERVICE_UNKNOWN)

    def _news_for(self, service: str, last: Status | None) -> bool:
        return self._status.get(service, SERVICE_UNKNOWN) != last or self._shutting_down

    async def Check(
        self, request: health_pb2.HealthCheckRequest, context: grpc.aio.ServicerContext
    ) -> health_pb2.HealthCheckResponse:
        status = self._status.get(request.service)
        if status is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"unknown service {request.service[:128]!r}")
        return health_pb2.HealthCheckResponse(status=status)

    async def Watch(self, request: health_pb2.HealthCheckRequest, context: grpc.aio.ServicerContext) -> None:
        service, last = request.service, None
        while True:
            async with self._changed:
                await self._changed.wait_for(functools.partial(self._news_for, service, last))
                status, ending = self._status.get(service, SERVICE_UNKNOWN), self._shutting_down
            if status != last:
                await context.write(health_pb2.HealthCheckResponse(status=status))
                last = status
            if ending:
                return
