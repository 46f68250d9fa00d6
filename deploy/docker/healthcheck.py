"""The image's HEALTHCHECK: exit 0 only while the server's REST readiness check answers 200.

It asks `/v2/health/ready` on the HTTP port, which answers the same with TLS on or off: over HTTPS when
the server has a certificate (the check trusts it unverified: it is the server's own loopback port),
and without a client certificate even under mutual TLS, as the server answers its health checks
without one (serving.http_server). The port is read from SEQSERVE_REST_PORT and TLS from
SEQSERVE_TLS_CERT (with the server's own parser and defaults), so set both through the environment,
not flags, when the health check should follow them.
"""

from __future__ import annotations

import ssl
import sys
import urllib.error
import urllib.request

from serving.settings import build_settings

TIMEOUT_S = 3.0


def main() -> int:
    settings = build_settings([])
    context = None
    if settings.tls:
        context = ssl.create_default_context()
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    scheme = "https" if settings.tls else "http"
    url = f"{scheme}://127.0.0.1:{settings.rest_port}/v2/health/ready"
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S, context=context) as response:
            status = response.status
    except urllib.error.HTTPError as error:
        status = error.code
    except OSError as error:
        print(f"unhealthy: {error}", file=sys.stderr)
        return 1
    print("SERVING" if status == 200 else f"NOT_SERVING ({status})")
    return 0 if status == 200 else 1


if __name__ == "__main__":
    sys.exit(main())
