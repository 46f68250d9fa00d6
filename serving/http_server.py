"""The server's HTTP port (KServe V2 REST and the compare page): aiohttp in the server's own event loop.

The routes themselves are protocol handlers (serving.handlers.v2_rest, tfs_rest, compare_page,
explain_rest, api_docs), each route with its OpenAPI operation (serving.handlers.operations); this
module holds the application and its middleware.
- Errors: a `ServingError` (or a refusal of aiohttp's, e.g. no such route) becomes its HTTP status
  with a JSON body `{"error": "..."}` (serving.handlers.rest); an unexpected exception is logged and
  answers 500, and the server keeps serving.
- Shutdown: requests pass the same gate as the gRPC RPCs (serving.admission); once it closes, new
  requests answer 503 and the drain waits for the ones inside, on every port at once.
  Health checks stay ungated, so probes see "not ready" instead of a refusal.
- TLS: the same certificate and key as the gRPC port. With a client CA, a client presenting a
  certificate it did not sign is refused in the handshake; one presenting none reaches only the health
  checks (Kubernetes' HTTPS probes cannot present one) and gets 403 everywhere else.
- The port may be bound with SO_REUSEPORT, so that several server processes can share it.
- Slow and idle clients: aiohttp's keep-alive timer is armed when a connection opens and again after
  each answer, and only a complete request head disarms it; so --rest-keepalive-timeout-s is both the
  idle keep-alive timeout and the time a client gets to send a request head (a slowloris client is
  closed then). It bounds the TLS handshake as well. The body then has --rest-body-timeout-s, and is
  read, bounded in size (unzipped bytes included) and cut short by shutdown, before any handler runs
  (serving.request_bodies).
- `--restricted-api` groups answer only requests with their header (serving.handlers.restricted_api).
- At most --rest-max-connections connections are open at once; one beyond it is closed as it is
  accepted, without a word (an HTTP answer would cost what the cap saves).
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

from serving import request_clock
from serving.admission import AdmissionGate
from serving.errors import ServingError
from serving.handlers.operations import ApiRoute, add_routes
from serving.handlers.rest import error_response, serving_error_response
from serving.handlers.restricted_api import rest_middleware
from serving.request_bodies import body_middleware
from serving.settings import Settings
from serving.tls import server_context

log = logging.getLogger(__name__)

# Seconds that requests still running when the port stops get before they are cancelled.
STOP_TIMEOUT_S = 0.5
HEALTH_PATHS = frozenset({"/v2/health/live", "/v2/health/ready"})
# The settings the application's middleware follows (the OpenAPI document describes what it answers).
SETTINGS = web.AppKey("settings", Settings)
CLIENT_CERTIFICATE_REQUIRED = (
    "this server requires a client certificate signed by its CA (--tls-client-ca); only the health "
    "checks answer without one"
)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _has_client_certificate(request: web.Request) -> bool:
    transport = request.transport
    return transport is not None and bool(transport.get_extra_info("peercert"))


def _middleware(gate: AdmissionGate, client_ca: bool) -> Callable[[web.Request, Handler], Awaitable[Any]]:
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        health = request.path in HEALTH_PATHS
        if client_ca and not health and not _has_client_certificate(request):
            return error_response(403, CLIENT_CERTIFICATE_REQUIRED)
        if not health and not gate.admit():
            return error_response(503, gate.refusal)
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
                gate.leave()

    return middleware


@web.middleware
async def _timed(request: web.Request, handler: Handler) -> web.StreamResponse:
    """A request's duration (serving.request_clock) from its body read to its answer encoded."""
    clock = request_clock.start()
    try:
        return await handler(request)
    finally:
        request_clock.stop(clock)


def _http_error_message(request: web.Request, error: web.HTTPException) -> str:
    if isinstance(error, web.HTTPMethodNotAllowed):
        return (
            f"{request.method} is not allowed on {request.path[:200]}; use {', '.join(error.allowed_methods)}"
        )
    if isinstance(error, web.HTTPNotFound):
        return (
            f"no route {request.path[:200]!r}; every route is described at /openapi.json (browse it at /docs)"
        )
    return error.text or error.reason


class HttpServer:
    def __init__(
        self,
        settings: Settings,
        gate: AdmissionGate,
        routes: Iterable[ApiRoute],
        outer_middlewares: Iterable[Any] = (),
    ) -> None:
        """`outer_middlewares` run before this module's own (tracing, when it is on)."""
        self._settings = settings
        self._app = web.Application(
            client_max_size=settings.max_message_bytes,
            middlewares=[
                *outer_middlewares,
                _middleware(gate, bool(settings.tls_client_ca)),
                *([rest_middleware(settings.restrictions)] if settings.restrictions else []),
                body_middleware(settings.max_message_bytes, settings.rest_body_timeout_s, gate),
                _timed,
            ],
        )
        self._app[SETTINGS] = settings
        add_routes(self._app, routes)
        # Stopping comes after the shared gate's drain, so whatever still runs has overrun the grace
        # period (a client still uploading its body, say): cancel it promptly, not after aiohttp's 60 s.
        self._runner = web.AppRunner(
            self._app,
            access_log=None,
            handle_signals=False,
            shutdown_timeout=STOP_TIMEOUT_S,
            keepalive_timeout=settings.rest_keepalive_timeout_s,
        )
        self.port = 0

    @property
    def app(self) -> web.Application:
        """The application: its router is the route table the OpenAPI document describes."""
        return self._app

    async def start(self, host: str, port: int, reuse_port: bool = False) -> int:
        """Listen; returns the bound port (useful with port 0)."""
        await self._runner.setup()
        site = _CappedSite(
            self._runner,
            host,
            port,
            ssl_context=server_context(self._settings, client_certificate_optional=True),
            reuse_port=reuse_port,
            max_connections=self._settings.rest_max_connections,
            handshake_timeout_s=self._settings.rest_keepalive_timeout_s,
        )
        await site.start()
        server = site._server  # aiohttp exposes the bound sockets only here
        assert server is not None
        self.port = int(server.sockets[0].getsockname()[1])  # type: ignore[attr-defined]
        return self.port

    async def stop(self) -> None:
        await self._runner.cleanup()


class _Refused(asyncio.Protocol):
    """A connection over --rest-max-connections: closed as soon as it is accepted."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.abort()  # type: ignore[attr-defined]


class _CappedSite(web.TCPSite):
    """aiohttp's TCP site, with a cap on open connections and a TLS handshake timeout.

    A burst of connections is accepted (and its protocols created) before any of them is registered
    with aiohttp's server, so the count includes the handlers created but not yet connected (held
    weakly: one whose TLS handshake fails is never connected, and is dropped with it)."""

    def __init__(self, *args: Any, max_connections: int, handshake_timeout_s: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._max_connections = max_connections
        self._handshake_timeout_s = handshake_timeout_s
        self._connecting: weakref.WeakSet[RequestHandler] = weakref.WeakSet()

    async def start(self) -> None:
        await web.BaseSite.start(self)  # registers the site with its runner
        server = self._runner.server
        assert server is not None
        connecting = self._connecting

        class Handler(RequestHandler):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                connecting.discard(self)
                super().connection_made(transport)

        def protocol() -> asyncio.Protocol:
            if len(server.connections) + len(connecting) >= self._max_connections:
                return _Refused()
            handler = Handler(server, loop=asyncio.get_running_loop(), **server._kwargs)
            connecting.add(handler)
            return handler

        self._server = await asyncio.get_running_loop().create_server(
            protocol,
            self._host,
            self._port,
            ssl=self._ssl_context,
            ssl_handshake_timeout=self._handshake_timeout_s if self._ssl_context else None,
            backlog=self._backlog,
            reuse_address=self._reuse_address,
            reuse_port=self._reuse_port,
        )
