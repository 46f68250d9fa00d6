"""The server process: gRPC (Classifier, health, reflection), /metrics, model loading, graceful shutdown.

Start-up order: the gRPC port opens first with health NOT_SERVING (a load balancer or Kubernetes probe
sees "alive, not ready"; requests get UNAVAILABLE "starting", serving.admission), then every model loads
and warms up, then health turns SERVING, the gate opens and the ready line is printed. On SIGTERM/SIGINT
health turns NOT_SERVING and the request gate closes (new RPCs get UNAVAILABLE); open ClassifyStreams
stop reading (they answer what they read, then end with UNAVAILABLE); in-flight RPCs (and everything
already queued for them) finish within the grace period; then the transport stops, the models close and
the process exits 0. A grace period that runs out (requests still running, or batches still running
when the models close) cancels what is left and exits 1 at once, without waiting for a batch that
hangs. A second signal during any of that stops the server at once (exit 1). A signal while the
models load lets the load running finish (it runs in a thread), starts no other, prints no ready
line, and exits 0.

The HTTP port (`--rest-port`: KServe V2 and TF Serving REST, the compare page, /openapi.json) opens
right after the gRPC port and shares its request gate, so one drain covers both. /metrics has its own
address (`--metrics-host`), so it can be bound to an interface only the monitoring system reaches.

With `--tls-cert/--tls-key` every port (gRPC, HTTP, /metrics) speaks only TLS, with the same identity;
with `--tls-client-ca` as well, only to clients presenting a certificate signed by that CA (on the HTTP
port the health checks excepted, see serving.http_server).
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Protocol

import grpc
from grpc_health.v1 import health, health_pb2_grpc
from prometheus_client import CollectorRegistry

from seqserve.v1 import classifier_pb2, classifier_pb2_grpc
from serving.admission import AdmissionGate
from serving.announce import address, announce
from serving.explanations import ExplainService
from serving.grpc_options import grpc_server_options
from serving.handlers.api_docs import ApiDocs
from serving.handlers.classifier import ClassifierServicer
from serving.handlers.compare_page import ComparePage
from serving.handlers.explain_rest import ExplainRoutes
from serving.handlers.grpc_guard import RequestGuard
from serving.handlers.operations import ApiRoute
from serving.handlers.restricted_api import RestrictedApiInterceptor
from serving.handlers.tfs_grpc import TFS_SERVICES, add_tfs_servicers_to_server
from serving.handlers.tfs_rest import TfsRestHandler
from serving.handlers.tracing import GrpcTracingInterceptor, ServerAddress, http_tracing_middleware
from serving.handlers.v2_grpc import (
    KSERVE_V2_SERVICE,
    STREAM_INFER_METHOD,
    KServeV2Servicer,
    add_kserve_v2_servicer_to_server,
)
from serving.handlers.v2_rest import V2RestHandler
from serving.health import NOT_SERVING, SERVING, HealthService
from serving.http_server import HttpServer
from serving.inference import InferenceService
from serving.inference_pool import InferencePool
from serving.loop_lag import LoopLagMonitor
from serving.metrics import ServerMetrics
from serving.poller import RepositoryPoller
from serving.protocol.tfs_dataplane import TfsDataPlane
from serving.protocol.v2_dataplane import DataPlane
from serving.reflection import enable_reflection
from serving.registry import ModelRegistry
from serving.repository import ModelRepository
from serving.settings import Settings
from serving.tracing import configure as configure_tracing

log = logging.getLogger(__name__)

# After the last RPC has left the closed gate, it stays closed this long (within the grace period)
# before the transport stops: a client whose next request is already on its way hears UNAVAILABLE
# "shutting down" instead of having it cancelled by the stopping transport.
GATE_LINGER_S = 0.5
# Closing the models (their queued work, the inference threads) gets at least this long after the drain,
# even when the drain used up the grace period.
CLOSE_MIN_S = 1.0
CLASSIFIER_SERVICE = classifier_pb2.DESCRIPTOR.services_by_name["Classifier"].full_name
# The services of the gRPC port, each with its own grpc.health status (and "" for the server).
SERVICES = (CLASSIFIER_SERVICE, KSERVE_V2_SERVICE, *TFS_SERVICES)


class SupervisorLink(Protocol):
    """What a server that is one of `--workers` processes needs of its supervisor (serving.worker
    implements it): the supervisor serves /metrics and says when every worker is ready."""

    def serve_metrics(self, registry: CollectorRegistry) -> None: ...

    def watch(self, stop: asyncio.Event) -> None:
        """Set `stop` when the supervisor asks for shutdown or is gone."""

    async def ready(self, port: int, models: dict[str, list[int]]) -> bool:
        """Report ready; True once every worker is, False if shutdown began first."""


def server_credentials(settings: Settings) -> grpc.ServerCredentials:
    """The gRPC port's TLS identity; with a client CA, a client without a certificate it signed is
    refused during the handshake, before any RPC."""
    client_ca = Path(settings.tls_client_ca).read_bytes() if settings.tls_client_ca else None
    return grpc.ssl_server_credentials(
        [(Path(settings.tls_key).read_bytes(), Path(settings.tls_cert).read_bytes())],
        root_certificates=client_ca,
        require_client_auth=client_ca is not None,
    )


def rest_routes(
    dataplane: DataPlane,
    tfs: TfsDataPlane,
    service: InferenceService,
    metrics: ServerMetrics,
    explain: ExplainService,
    registry: ModelRegistry,
) -> list[ApiRoute]:
    """Every route of the HTTP port, each with its OpenAPI operation (building them calls nothing)."""
    return [
        *V2RestHandler(dataplane).routes(),
        *TfsRestHandler(tfs).routes(),
        *ComparePage(service, metrics).routes(),
        *ExplainRoutes(explain).routes(),
        *ApiDocs(registry).routes(),
    ]


class Server:
    def __init__(self, settings: Settings, link: SupervisorLink | None = None) -> None:
        """`link`: this server is one of `--workers` processes (see SupervisorLink)."""
        self.settings = settings
        self.link = link
        self.metrics = ServerMetrics()
        self.tracing = configure_tracing()  # None unless the OTEL_* variables ask for traces
        self.address = ServerAddress(settings.host)
        self.health = HealthService()
        self.stopping = asyncio.Event()  # set when shutdown begins; open streams stop reading
        self.pool = InferencePool(settings.inference_threads)
        self.loop_lag = LoopLagMonitor(self.metrics.registry)
        self.repository = ModelRepository(settings.model_repository)
        self.registry = ModelRegistry(
            self.repository,
            settings,
            self.metrics,
            self.pool,
            on_readiness=self._model_readiness_changed,
            tracing=self.tracing,
        )
        self.service = InferenceService(self.registry, settings, self.metrics, self.tracing)
        self.dataplane = DataPlane(self.service, self.registry, self.health, settings)
        self.tfs = TfsDataPlane(self.service, self.registry, settings)
        self.explain = ExplainService(self.service, self.registry, settings)
        options = grpc_server_options(settings, reuse_port=link is not None)
        self.gate = AdmissionGate()
        interceptors: list[grpc.aio.ServerInterceptor] = [
            RequestGuard(self.gate, lenient_streams=frozenset({STREAM_INFER_METHOD}))
        ]
        restrictions = settings.restrictions  # without any, no interceptor costs a call its time
        if restrictions:
            interceptors.insert(0, RestrictedApiInterceptor(restrictions))
        outer_middlewares = []
        if self.tracing is not None:  # outermost: a call's span covers the gate too
            interceptors.insert(0, GrpcTracingInterceptor(self.tracing, self.address))
            outer_middlewares.append(http_tracing_middleware(self.tracing, self.address))
        self.grpc_server = grpc.aio.server(interceptors=interceptors, options=options)
        self.http_server = HttpServer(
            settings,
            self.gate,
            rest_routes(self.dataplane, self.tfs, self.service, self.metrics, self.explain, self.registry),
            outer_middlewares,
        )
        self.port = 0
        self.rest_port = 0
        self.metrics_port = 0
        self._metrics_http: object | None = None
        self._poller: asyncio.Task[None] | None = None

    async def _model_readiness_changed(self, name: str, ready: bool) -> None:
        await self.health.set(name, SERVING if ready else NOT_SERVING)

    async def start(self) -> None:
        if self.link is None:
            self._metrics_http, self.metrics_port = self.metrics.serve_http(
                self.settings.effective_metrics_host, self.settings.metrics_port, self.settings
            )
        else:
            self.link.serve_metrics(self.metrics.registry)
        classifier_pb2_grpc.add_ClassifierServicer_to_server(
            ClassifierServicer(self.service, self.registry, self.explain, self.stopping), self.grpc_server
        )
        add_kserve_v2_servicer_to_server(
            KServeV2Servicer(self.dataplane, self.stopping),
            self.grpc_server,
        )
        add_tfs_servicers_to_server(self.tfs, self.grpc_server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.grpc_server)
        enable_reflection(self.grpc_server, (*SERVICES, health.SERVICE_NAME))
        for service in ("", *SERVICES):
            await self.health.set(service, NOT_SERVING)
        listen = address(self.settings.host, self.settings.port)
        if self.settings.tls:
            self.port = self.grpc_server.add_secure_port(listen, server_credentials(self.settings))
        else:
            self.port = self.grpc_server.add_insecure_port(listen)
        await self.grpc_server.start()
        self.loop_lag.start()
        self.rest_port = await self.http_server.start(
            self.settings.host, self.settings.rest_port, reuse_port=self.link is not None
        )
        self.address.grpc_port, self.address.http_port = self.port, self.rest_port
        log.info(
            "listening, loading models",
            extra={"grpc_address": self.grpc_address, "rest_port": self.rest_port},
        )
        await self.registry.load_all()
        if not self.registry.snapshot.models:
            raise RuntimeError(
                f"no model in {self.settings.model_repository} could be loaded: "
                + (
                    json.dumps(self.registry.failures)
                    if self.registry.failures
                    else "the repository is empty"
                )
            )
        if self.link is not None and not await self.link.ready(self.port, self.served_models()):
            return  # shutdown began before every worker was ready
        # Everything built so far (modules, models, sessions) lives as long as the server: out of the
        # cyclic collector's way, a full collection walks only what requests leave behind, not the whole
        # start-up heap (tens of thousands of objects, a pause of milliseconds each time under load).
        gc.freeze()
        self.gate.open()
        for service in ("", *SERVICES):
            await self.health.set(service, SERVING)
        if self.settings.poll_interval > 0:
            poller = RepositoryPoller(self.registry, self.repository, self.settings.poll_interval)
            self._poller = asyncio.get_running_loop().create_task(poller.run(), name="repository-poller")

    @property
    def grpc_address(self) -> str:
        return address(self.settings.host, self.port)

    def served_models(self) -> dict[str, list[int]]:
        snapshot = self.registry.snapshot
        return {name: sorted(snapshot.models[name].versions) for name in snapshot.names()}

    async def _drain_then_stop(self, grace: float) -> bool:
        """Let the RPCs inside the closed gate finish, stop the transport, then close the models (what
        was queued for them runs) and the inference threads, all within `grace` (closing gets at least
        CLOSE_MIN_S). True if everything finished in time."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        in_time = True
        try:
            await asyncio.wait_for(self.gate.wait_idle(), grace)
        except TimeoutError:
            log.warning("grace period over, cancelling running requests", extra={"running": self.gate.active})
            in_time = False
        remaining = max(0.0, deadline - loop.time())
        await asyncio.sleep(min(GATE_LINGER_S, remaining))
        await asyncio.gather(
            self.grpc_server.stop(max(0.0, remaining - GATE_LINGER_S)), self.http_server.stop()
        )
        try:
            await asyncio.wait_for(self._close_models(), max(CLOSE_MIN_S, deadline - loop.time()))
        except TimeoutError:
            log.warning(
                "grace period over while batches still ran; leaving them", extra={"grace_period_s": grace}
            )
            in_time = False
        return in_time

    async def _close_models(self) -> None:
        await self.registry.close()
        await asyncio.to_thread(self.pool.close)

    async def stop(self, force: asyncio.Event | None = None) -> bool:
        """Graceful shutdown; when `force` is set meanwhile, stop at once. Returns True if graceful:
        every request and batch finished within the grace period."""
        grace = self.settings.grace_period_s
        log.info("shutting down", extra={"grace_period_s": grace})
        if self._poller is not None:
            self._poller.cancel()
        self.loop_lag.stop()
        await self.health.shutdown()
        self.stopping.set()
        self.gate.close()
        graceful = asyncio.ensure_future(self._drain_then_stop(grace))
        forced = asyncio.ensure_future((force or asyncio.Event()).wait())
        await asyncio.wait((graceful, forced), return_when=asyncio.FIRST_COMPLETED)
        forced.cancel()
        in_time = graceful.done() and graceful.result()
        if not graceful.done():
            log.warning("second signal: stopping now, cancelling the requests still running")
            graceful.cancel()
            await asyncio.gather(self.grpc_server.stop(None), self.http_server.stop())
        if not in_time:
            self.pool.close(timeout=0.0)  # its threads are daemons: a hung batch cannot hold the exit
        self.explain.close(wait=in_time)
        if self._metrics_http is not None:
            self._metrics_http.shutdown()  # type: ignore[attr-defined]
        if self.tracing is not None:
            await asyncio.to_thread(self.tracing.shutdown)  # the spans of the last requests
        return in_time


async def serve(settings: Settings, link: SupervisorLink | None = None) -> int:
    loop = asyncio.get_running_loop()
    stop_requested, force = asyncio.Event(), asyncio.Event()

    def on_signal() -> None:
        (force if stop_requested.is_set() else stop_requested).set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal)
    if link is not None:
        link.watch(stop_requested)
    server = Server(settings, link)
    starting = asyncio.ensure_future(server.start())
    stop_waiting = asyncio.ensure_future(stop_requested.wait())
    await asyncio.wait((starting, stop_waiting), return_when=asyncio.FIRST_COMPLETED)
    stop_waiting.cancel()
    if not starting.done():  # a signal while the models load: the load running ends, no other starts
        log.info("shutdown requested while starting; loading no further model")
        starting.cancel()
        await asyncio.gather(starting, return_exceptions=True)
        return _exit_code(await server.stop(force))
    try:
        starting.result()
    except Exception as error:
        log.error("start-up failed", extra={"error": str(error)})
        await server.stop()
        return 1
    if link is None:
        announce(settings, server.port, server.rest_port, server.metrics_port, server.served_models())
    await stop_requested.wait()
    return _exit_code(await server.stop(force))


def _exit_code(graceful: bool) -> int:
    """0 after a graceful stop. Otherwise 1, at once: a thread still running (an explanation, a load)
    would hold the interpreter's exit, which joins every thread that is not a daemon."""
    log.info("stopped", extra={"graceful": graceful})
    sys.stdout.flush()
    if graceful:
        return 0
    logging.shutdown()  # flush the log handlers: os._exit skips them
    sys.stderr.flush()
    os._exit(1)
