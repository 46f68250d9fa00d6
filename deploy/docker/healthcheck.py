"""The image's HEALTHCHECK: exit 0 only while the server's gRPC health service reports SERVING.

grpc_health_probe is a separate binary; the grpcio-health-checking stubs are already in the image. The
port is read from SEQSERVE_PORT (with the server's own parser and default), so set the port through the
environment, not a flag, when the health check should follow it.
"""

from __future__ import annotations

import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from serving.settings import build_settings

TIMEOUT_S = 3.0


def main() -> int:
    port = build_settings([]).port
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=""), timeout=TIMEOUT_S
            )
        except grpc.RpcError as error:
            print(f"unhealthy: {error.code().name}", file=sys.stderr)
            return 1
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
    print(status)
    return 0 if reply.status == health_pb2.HealthCheckResponse.SERVING else 1


if __name__ == "__main__":
    sys.exit(main())
