"""The TLS identity of the server's HTTP ports (REST, and /metrics under --workers), from the settings.

Standard library only: the `--workers` supervisor, which imports neither gRPC nor aiohttp, serves
/metrics with it. (The gRPC port builds its own credentials from the same files, serving.server; the
single-process /metrics uses it as well, serving.metrics_http.)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from serving.settings import Settings

if TYPE_CHECKING:
    import ssl


def server_context(settings: Settings, client_certificate_optional: bool = False) -> ssl.SSLContext | None:
    """None for plaintext. With a client CA, a client presenting a certificate it did not sign is
    refused in the handshake; one presenting none is refused too, unless `client_certificate_optional`
    (then the application decides what such a client may reach)."""
    if not settings.tls:
        return None
    import ssl  # only with TLS on: megabytes the --workers supervisor otherwise does without

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(settings.tls_cert, settings.tls_key)
    if settings.tls_client_ca:
        context.load_verify_locations(settings.tls_client_ca)
        context.verify_mode = ssl.CERT_OPTIONAL if client_certificate_optional else ssl.CERT_REQUIRED
    return context
