"""The server process: gRPC (Classifier, health, reflection), /metrics, model loading, graceful shutdown.

Start-up order: the gRPC port opens first with health NOT_SERVING (a load balancer or Kubernetes probe
sees "alive, not ready"), then every model loads and warms up, then health turns SERVING and the
ready line is printed. On SIGTERM/SIGINT health turns NOT_SERVING, the server stops accepting RPCs,
in-flight RPCs (and everything already queued for them) finish within the grace period, and the
process exits 0.
"""

from __future__ import annotations

import asyncio
import json
import logging
import shlex
import signal
import sys
from concurrent.futures import ThreadPoolExecutor

import grpc
from grpc_health.v1 import health, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from seqserve.v1 import classifier_pb2, classifier_pb2_grpc
from serving.handlers.classifier import ClassifierServicer
from serving.handlers.kserve_v2 import KSERVE_V2_SERVICE, KServeV2Servicer, add_kserve_v2_servicer_to_server
from serving.health import NOT_SERVING, SERVING, HealthService
from serving.inference import InferenceService
from serving.metrics import ServerMetrics
from serving.registry import ModelRegistry
from serving.repository import ModelRepository
from serving.settings import Settings

log = logging.getLogger(__name__)

READY_PREFIX = "seqserve-ready "
CLASSIFIER_SERVICE = classifier_pb2.DESCRIPTOR.services_by_name["Classifier"].full_name


def _address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class Server:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.metrics = ServerMetrics()
        self.health = HealthService()
        self.executor = ThreadPoolExecutor(settings.inference_threads, thread_name_prefix="inference")
        self.registry = ModelRegistry(
            ModelRepository(settings.model_repository),
            settings,
            self.metrics,
            self.executor,
            on_readiness=self._model_readiness_changed,
        )
        self.service = InferenceService(self.registry, settings, self.metrics)
        limits = [
            ("grpc.max_receive_message_length", settings.max_message_bytes),
            ("grpc.max_send_message_length", settings.max_message_bytes),
        ]
        self.grpc_server = grpc.aio.server(options=limits)
        self.port = 0
        self.metrics_port = 0
        self._metrics_http: object | None = None

    async def _model_readiness_changed(self, name: str, ready: bool) -> None:
        await self.health.set(name, SERVING if ready else NOT_SERVING)

    async def start(self) -> None:
        self._metrics_http, self.metrics_port = self.metrics.serve_http(
            self.settings.effective_metrics_host, self.settings.metrics_port
        )
        classifier_pb2_grpc.add_ClassifierServicer_to_server(
            ClassifierServicer(self.service, self.registry), self.grpc_server
        )
        add_kserve_v2_servicer_to_server(
            KServeV2Servicer(self.service, self.registry, self.health), self.grpc_server
        )
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.grpc_server)
        reflection.enable_server_reflection(
            (CLASSIFIER_SERVICE, KSERVE_V2_SERVICE, health.SERVICE_NAME, reflection.SERVICE_NAME),
            self.grpc_server,
        )
        for service in ("", CLASSIFIER_SERVICE, KSERVE_V2_SERVICE):
            await self.health.set(service, NOT_SERVING)
        self.port = self.grpc_server.add_insecure_port(_address(self.settings.host, self.settings.port))
        await self.grpc_server.start()
        log.info("listening, loading models", extra={"grpc_address": self.grpc_address})
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
        for service in ("", CLASSIFIER_SERVICE, KSERVE_V2_SERVICE):
            await self.health.set(service, SERVING)

    @property
    def grpc_address(self) -> str:
        return _address(self.settings.host, self.port)

    @property
    def metrics_url(self) -> str:
        return f"http://{_address(self.settings.effective_metrics_host, self.metrics_port)}/metrics"

    def announce(self) -> None:
        """Tell people (and, in the last line, programs) where the server is and how to use it."""
        snapshot = self.registry.snapshot
        models = {name: sorted(snapshot.models[name].versions) for name in snapshot.names()}
        example = snapshot.names()[0]
        print(
            f"seqserve: gRPC on {self.grpc_address}  (seqserve.v1.Classifier, "
            f"{KSERVE_V2_SERVICE} (KServe V2), grpc.health.v1, reflection)"
        )
        print(f"seqserve: metrics at {self.metrics_url}")
        listing = ", ".join(f"{name} v{','.join(map(str, versions))}" for name, versions in models.items())
        print(f"seqserve: models {listing}")
        print("seqserve: try")
        print(
            f"  seqserve classify --address {self.grpc_address} --model {example} "
            + shlex.quote("Local man wins award for most average day ever")
        )
        ready = {"grpc_address": self.grpc_address, "metrics_url": self.metrics_url, "models": models}
        print(READY_PREFIX + json.dumps(ready), flush=True)

    async def stop(self) -> None:
        grace = self.settings.grace_period_s
        log.info("shutting down", extra={"grace_period_s": grace})
        await self.health.shutdown()
        await self.grpc_server.stop(grace)
        await self.registry.close()
        self.executor.shutdown(wait=True)
        if self._metrics_http is not None:
            self._metrics_http.shutdown()  # type: ignore[attr-defined]


async def serve(settings: Settings) -> int:
    loop = asyncio.get_running_loop()
    stop_requested = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop_requested.set)
    server = Server(settings)
    try:
        await server.start()
    except Exception as error:
        log.error("start-up failed", extra={"error": str(error)})
        await server.stop()
        return 1
    server.announce()
    await stop_requested.wait()
    await server.stop()
    log.info("stopped")
    sys.stdout.flush()
    return 0
