"""The server's HTTP port (KServe V2 REST and the compare page): aiohttp in the server's own event loop.

What every HTTP route shares lives here; the routes themselves are protocol handlers
(serving.handlers.v2_rest, serving.handlers.compare_page).
- Errors: a `ServingError` (or a refusal of aiohttp's, e.g. a body over --max-message-bytes) becomes
  its HTTP status with a JSON body `{"error": "..."}`; an unexpected exception is logged and answers
  500, and the server keeps serving.
- Shutdown: requests pass the same gate as the gRPC RPCs (serving.handlers.guard.RequestGuard); once
  it closes, new requests answer 503 and the drain waits for the ones inside, on every port at once.
  Health checks stay ungated, so probes see "not ready" instead of a refusal.
- TLS: the same certificate and key as the gRPC port. With a client CA, a client presenting a
  certificate it did not sign is refused in the handshake; one presenting none reaches only the health
  checks (Kubernetes' HTTPS probes cannot present one) and gets 403 everywhere else.
- The port may be bound with SO_REUSEPORT, so that several server processes can share it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import grpc
from aiohttp import web

from serving.handlers.guard import SHUTTING_DOWN, RequestGuard
from serving.inference import ServingError
from serving.settings import Settings
from serving.tls import server_context

log = logging.getLogger(__name__)

# The HTTP status of each gRPC status code a ServingError can carry. A full model queue is 429: the
# server is healthy and the request may be retried after a backoff, whereas 503 says "this server is
# going away or not ready, send it elsewhere" (draining, unloading), and load balancers act on it.
HTTP_STATUS = {
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.INTERNAL: 500,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
}
# The seconds a client told 429 is asked to wait (Retry-After).
RETRY_AFTER_S = 1
# Seconds that requests still running when the port stops get before they are cancelled.
STOP_TIMEOUT_S = 0.5
HEALTH_PATHS = frozenset({"/v2/health/live", "/v2/health/ready"})
CLIENT_CERTIFICATE_REQUIRED = (
    "this server requires a client certificate signed by its CA (--tls-client-ca); only the health "
    "checks answer without one"
)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def json_response(document: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        body=json.dumps(document, separators=(",", ":")).encode(),
        status=status,
        content_type="application/json",
        charset="utf-8",
        headers=headers,
    )


def error_response(status: int, message: str) -> web.Response:
    headers = {"Retry-After": str(RETRY_AFTER_S)} if status == 429 else None
    return json_response({"error": message}, status, headers)


def serving_error_response(error: ServingError) -> web.Response:
    return error_response(HTTP_STATUS.get(error.code, 500), error.message)


def _has_client_certificate(request: web.Request) -> bool:
    transport = request.transport
    return transport is not None and bool(transport.get_extra_info("peercert"))


def _middleware(guard: RequestGuard, client_ca: bool) -> Callable[[web.Request, Handler], Awaitable[Any]]:
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        health = request.path in HEALTH_PATHS
        if client_ca and not health and not _has_client_certificate(request):
            return error_response(403, CLIENT_CERTIFICATE_REQUIRED)
        if not health and not guard.admit():
            return error_response(503, SHUTTING_DOWN)
        try:
            return await handler(request)
        except ServingError as error:
            return serving_error_response(error)
        except web.HTTPException as error:  # aiohttp's own refusals: no route, wrong method, too large
            if error.status < 400:
                raise
            return error_response(error.status, _http_error_message(request, error))
        except Exception:
            log.exception("HTTP request failed", extra={"path": request.path[:200]})
            return error_response(500, "internal error; the server logged it")
        finally:
            if not health:
                guard.leave()

    return middleware


def _http_error_message(request: web.Request, error: web.HTTPException) -> str:
    if isinstance(error, web.HTTPRequestEntityTooLarge):
        return f"{error.text}; the limit is set by --max-message-bytes"
    if isinstance(error, web.HTTPMethodNotAllowed):
        return (
            f"{request.method} is not allowed on {request.path[:200]}; use {', '.join(error.allowed_methods)}"
        )
    if isinstance(error, web.HTTPNotFound):
        return f"no route {request.path[:200]!r}; the API is listed in the README (KServe V2 REST under /v2)"
    return error.text or error.reason


class HttpServer:
    def __init__(self, settings: Settings, guard: RequestGuard, routes: Iterable[web.RouteDef]) -> None:
        self._settings = settings
        self._app = web.Application(
            client_max_size=settings.max_message_bytes,
            middlewares=[_middleware(guard, bool(settings.tls_client_ca))],
        )
        self._app.add_routes(list(routes))
        # Stopping comes after the shared gate's drain, so whatever still runs has overrun the grace
        # period (a client still uploading its body, say): cancel it promptly, not after aiohttp's 60 s.
        self._runner = web.AppRunner(
            self._app, access_log=None, handle_signals=False, shutdown_timeout=STOP_TIMEOUT_S
        )
        self.port = 0

    async def start(self, host: str, port: int, reuse_port: bool = False) -> int:
        """Listen; returns the bound port (useful with port 0)."""
        await self._runner.setup()
        site = web.TCPSite(
            self._runner,
            host,
            port,
            ssl_context=server_context(self._settings, client_certificate_optional=True),
            reuse_port=reuse_port,
        )
        await site.start()
        server = site._server  # aiohttp exposes the bound sockets only here
        assert server is not None
        self.port = int(server.sockets[0].getsockname()[1])  # type: ignore[attr-defined]
        return self.port

    async def stop(self) -> None:
        await self._runner.cleanup()
