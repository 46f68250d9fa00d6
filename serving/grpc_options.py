"""The gRPC port's channel arguments: message limits and connection hygiene, all enforced by grpc core.

- `grpc.server_handshake_timeout_ms`: a connection must finish its TLS handshake and send the HTTP/2
  preface and SETTINGS within --grpc-handshake-timeout-s, so half-open connections (a client that
  connects and sends nothing, or part of the preface) are closed instead of holding a file descriptor.
- `grpc.max_allowed_incoming_connections` (--grpc-max-connections): beyond it new connections are
  closed as they are accepted.
- `grpc.max_connection_idle_ms`, `grpc.max_connection_age_ms`, `grpc.max_connection_age_grace_ms`:
  idle connections and (optionally) old ones are sent GOAWAY, so that clients reconnect and rebalance;
  calls running on an aged connection get the grace period.
- keep-alive enforcement: pings closer together than --grpc-min-ping-interval-s are strikes, and after
  --grpc-max-ping-strikes the client gets GOAWAY (ENHANCE_YOUR_CALM), so a ping flood costs little.
- `grpc.max_concurrent_streams` (off by default): calls one connection may run at once. A client
  learns it from the server's first SETTINGS frame; a burst opened on a new connection before that
  (400 calls at once in tests/reliability/test_overload.py) has the calls beyond it refused
  (UNAVAILABLE), which is why it is not on by default.
"""

from __future__ import annotations

from serving.settings import Settings

# grpc core's "never" for the connection idle and age limits (INT_MAX milliseconds)
NEVER_MS = 2**31 - 1


def _ms(seconds: float, zero_means_never: bool = False) -> int:
    if zero_means_never and seconds == 0:
        return NEVER_MS
    return min(NEVER_MS, int(seconds * 1000))


def grpc_server_options(settings: Settings, reuse_port: bool) -> list[tuple[str, int]]:
    """`reuse_port`: several worker processes share the port (a lone server refuses a taken port)."""
    options = [
        ("grpc.max_receive_message_length", settings.max_message_bytes),
        ("grpc.max_send_message_length", settings.max_message_bytes),
        ("grpc.so_reuseport", int(reuse_port)),
        ("grpc.server_handshake_timeout_ms", _ms(settings.grpc_handshake_timeout_s)),
        ("grpc.max_connection_idle_ms", _ms(settings.grpc_max_connection_idle_s, zero_means_never=True)),
        ("grpc.max_connection_age_ms", _ms(settings.grpc_max_connection_age_s, zero_means_never=True)),
        ("grpc.max_connection_age_grace_ms", _ms(settings.grpc_max_connection_age_grace_s)),
        ("grpc.http2.min_ping_interval_without_data_ms", _ms(settings.grpc_min_ping_interval_s)),
        ("grpc.http2.max_ping_strikes", settings.grpc_max_ping_strikes),
    ]
    if settings.grpc_max_concurrent_streams:
        options.append(("grpc.max_concurrent_streams", settings.grpc_max_concurrent_streams))
    if settings.grpc_max_connections:
        options.append(("grpc.max_allowed_incoming_connections", settings.grpc_max_connections))
    return options
