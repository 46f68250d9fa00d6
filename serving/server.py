"""The server process: gRPC (Classifier, health, reflection), /metrics, model loading, graceful shutdown.

Start-up order: the gRPC port opens first with health NOT_SERVING (a load balancer or Kubernetes probe
sees "alive, not ready"), then every model loads and warms up, then health turns SERVING and the
ready line is printed. On SIGTERM/SIGINT health turns NOT_SERVING and the request gate closes (new
RPCs get UNAVAILABLE, see serving.handlers.guard); open ClassifyStreams stop reading (they answer what
they read, then end with UNAVAILABLE); in-flight RPCs (and everything already queued for them) finish
within the grace period; then the transport stops and the process exits 0. A second signal during that
stops the server at once (exit 1): running requests are cancelled.

With `--tls-cert/--tls-key` the gRPC port speaks only TLS; with `--tls-client-ca` as well, only to
clients presenting a certificate signed by that CA. /metrics stays plain HTTP on its own address
(`--metrics-host`), so it can be bound to an interface only the monitoring system reaches.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shlex
import shutil
import signal
import sys
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from seqserve.v1 import classifier_pb2, classifier_pb2_grpc
from serving.handlers.classifier import ClassifierServicer
from serving.handlers.guard import RequestGuard
from serving.handlers.kserve_v2 import KSERVE_V2_SERVICE, KServeV2Servicer, add_kserve_v2_servicer_to_server
from serving.health import NOT_SERVING, SERVING, HealthService
from serving.inference import InferenceService
from serving.metrics import ServerMetrics
from serving.poller import RepositoryPoller
from serving.registry import ModelRegistry
from serving.repository import ModelRepository
from serving.settings import Settings

log = logging.getLogger(__name__)

READY_PREFIX = "seqserve-ready "


def read_ready_line(lines: Iterable[str], timeout_s: float) -> dict | None:
    """For whoever starts a server: its ready line's JSON from its stdout, or None if it ended or
    `timeout_s` passed first (checked between lines)."""
    deadline = time.monotonic() + timeout_s
    for line in lines:
        if line.startswith(READY_PREFIX):
            return json.loads(line[len(READY_PREFIX) :])
        if time.monotonic() > deadline:
            break
    return None


# After the last RPC has left the closed gate, it stays closed this long (within the grace period)
# before the transport stops: a client whose next request is already on its way hears UNAVAILABLE
# "shutting down" instead of having it cancelled by the stopping transport.
GATE_LINGER_S = 0.5
CLASSIFIER_SERVICE = classifier_pb2.DESCRIPTOR.services_by_name["Classifier"].full_name


def _address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def server_credentials(settings: Settings) -> grpc.ServerCredentials:
    """The gRPC port's TLS identity; with a client CA, a client without a certificate it signed is
    refused during the handshake, before any RPC."""
    client_ca = Path(settings.tls_client_ca).read_bytes() if settings.tls_client_ca else None
    return grpc.ssl_server_credentials(
        [(Path(settings.tls_key).read_bytes(), Path(settings.tls_cert).read_bytes())],
        root_certificates=client_ca,
        require_client_auth=client_ca is not None,
    )


def client_command() -> str:
    """`seqserve` as the person who started the server can paste it: bare only if it is on PATH."""
    if shutil.which("seqserve"):
        return "seqserve"
    script = Path(sys.executable).parent / "seqserve"
    return str(script.relative_to(Path.cwd())) if script.is_relative_to(Path.cwd()) else str(script)


class Server:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.metrics = ServerMetrics()
        self.health = HealthService()
        self.stopping = asyncio.Event()  # set when shutdown begins; open streams stop reading
        self.executor = ThreadPoolExecutor(settings.inference_threads, thread_name_prefix="inference")
        self.repository = ModelRepository(settings.model_repository)
        self.registry = ModelRegistry(
            self.repository,
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
        self.guard = RequestGuard()
        self.grpc_server = grpc.aio.server(interceptors=[self.guard], options=limits)
        self.port = 0
        self.metrics_port = 0
        self._metrics_http: object | None = None
        self._poller: asyncio.Task[None] | None = None

    async def _model_readiness_changed(self, name: str, ready: bool) -> None:
        await self.health.set(name, SERVING if ready else NOT_SERVING)

    async def start(self) -> None:
        self._metrics_http, self.metrics_port = self.metrics.serve_http(
            self.settings.effective_metrics_host, self.settings.metrics_port
        )
        classifier_pb2_grpc.add_ClassifierServicer_to_server(
            ClassifierServicer(self.service, self.registry, self.stopping), self.grpc_server
        )
        add_kserve_v2_servicer_to_server(
            KServeV2Servicer(self.service, self.registry, self.health, self.settings), self.grpc_server
        )
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.grpc_server)
        reflection.enable_server_reflection(
            (CLASSIFIER_SERVICE, KSERVE_V2_SERVICE, health.SERVICE_NAME, reflection.SERVICE_NAME),
            self.grpc_server,
        )
        for service in ("", CLASSIFIER_SERVICE, KSERVE_V2_SERVICE):
            await self.health.set(service, NOT_SERVING)
        address = _address(self.settings.host, self.settings.port)
        if self.settings.tls:
            self.port = self.grpc_server.add_secure_port(address, server_credentials(self.settings))
        else:
            self.port = self.grpc_server.add_insecure_port(address)
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
        if self.settings.poll_interval > 0:
            poller = RepositoryPoller(self.registry, self.repository, self.settings.poll_interval)
            self._poller = asyncio.get_running_loop().create_task(poller.run(), name="repository-poller")

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
        transport = "gRPC (TLS)" if self.settings.tls else "gRPC"
        print(
            f"seqserve: {transport} on {self.grpc_address}  (seqserve.v1.Classifier, "
            f"{KSERVE_V2_SERVICE} (KServe V2), grpc.health.v1, reflection)"
        )
        print(f"seqserve: metrics at {self.metrics_url}")
        listing = ", ".join(f"{name} v{','.join(map(str, versions))}" for name, versions in models.items())
        print(f"seqserve: models {listing}")
        print("seqserve: try")
        tls = " --tls-ca CA.pem" if self.settings.tls else ""
        if self.settings.tls_client_ca:
            tls += " --tls-cert CLIENT.pem --tls-key CLIENT.key"
        print(
            f"  {client_command()} classify --address {self.grpc_address}{tls} --model {example} "
            + shlex.quote("Local man wins award for most average day ever")
        )
        ready = {
            "grpc_address": self.grpc_address,
            "tls": self.settings.tls,
            "metrics_url": self.metrics_url,
            "models": models,
            "pid": os.getpid(),
        }
        print(READY_PREFIX + json.dumps(ready), flush=True)

    async def _drain_then_stop(self, grace: float) -> None:
        """Let the RPCs inside the closed gate finish (within `grace`), then stop the transport."""
        started = asyncio.get_running_loop().time()
        try:
            await asyncio.wait_for(self.guard.wait_idle(), grace)
        except TimeoutError:
            log.warning(
                "grace period over, cancelling running requests", extra={"running": self.guard.active}
            )
        remaining = max(0.0, grace - (asyncio.get_running_loop().time() - started))
        await asyncio.sleep(min(GATE_LINGER_S, remaining))
        await self.grpc_server.stop(max(0.0, remaining - GATE_LINGER_S))

    async def stop(self, force: asyncio.Event | None = None) -> bool:
        """Graceful shutdown; when `force` is set meanwhile, stop at once. Returns True if graceful."""
        grace = self.settings.grace_period_s
        log.info("shutting down", extra={"grace_period_s": grace})
        if self._poller is not None:
            self._poller.cancel()
        await self.health.shutdown()
        self.stopping.set()
        self.guard.close()
        graceful = asyncio.ensure_future(self._drain_then_stop(grace))
        forced = asyncio.ensure_future((force or asyncio.Event()).wait())
        await asyncio.wait((graceful, forced), return_when=asyncio.FIRST_COMPLETED)
        forced.cancel()
        forced_stop = not graceful.done()
        if forced_stop:
            log.warning("second signal: stopping now, cancelling the requests still running")
            graceful.cancel()
            await self.grpc_server.stop(None)
            self.executor.shutdown(wait=False, cancel_futures=True)
        else:
            await self.registry.close()
            self.executor.shutdown(wait=True)
        if self._metrics_http is not None:
            self._metrics_http.shutdown()  # type: ignore[attr-defined]
        return not forced_stop


async def serve(settings: Settings) -> int:
    loop = asyncio.get_running_loop()
    stop_requested, force = asyncio.Event(), asyncio.Event()

    def on_signal() -> None:
        (force if stop_requested.is_set() else stop_requested).set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal)
    server = Server(settings)
    try:
        await server.start()
    except Exception as error:
        log.error("start-up failed", extra={"error": str(error)})
        await server.stop()
        return 1
    server.announce()
    await stop_requested.wait()
    graceful = await server.stop(force)
    log.info("stopped", extra={"graceful": graceful})
    sys.stdout.flush()
    return 0 if graceful else 1
