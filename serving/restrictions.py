"""`--restricted-api`: groups of administrative APIs that answer only requests carrying a header, as
Triton's `--grpc-restricted-protocol` / `--http-restricted-api`, on gRPC (metadata) and REST alike.

Syntax: `GROUPS:HEADER=VALUE`, several separated by `;`, e.g.
`repository,statistics:x-admin-key=s3cret;page:x-page-key=other`. Groups:

- repository: V2 repository index, load and unload;
- model-config: V2 model configuration;
- statistics: V2 model statistics;
- metadata: V2 server and model metadata, seqserve.v1 ListModels and GetModel;
- page: the compare page and its JSON routes (/, /v1/compare, /v1/latency), the OpenAPI document
  and its browser (/openapi.json, /docs).

Inference, health and readiness are never restricted. A request without the header, or with another
value, gets PERMISSION_DENIED (REST 403) naming the header, never the value. Values are compared in
constant time (hmac.compare_digest), and no log line prints them; to keep the value out of the process
list, give it as SEQSERVE_RESTRICTED_API in the environment.

Standard library only (the settings, which the --workers supervisor imports, validate with it); the
gRPC interceptor and the REST middleware that enforce it are serving.handlers.restricted_api.
"""

from __future__ import annotations

import hmac
import re
from dataclasses import dataclass, field

GROUPS = ("repository", "model-config", "statistics", "metadata", "page")
V2 = "/inference.GRPCInferenceService/"
V1 = "/seqserve.v1.Classifier/"
GRPC_GROUPS = {
    V2 + "RepositoryIndex": "repository",
    V2 + "RepositoryModelLoad": "repository",
    V2 + "RepositoryModelUnload": "repository",
    V2 + "ModelConfig": "model-config",
    V2 + "ModelStatistics": "statistics",
    V2 + "ServerMetadata": "metadata",
    V2 + "ModelMetadata": "metadata",
    V1 + "ListModels": "metadata",
    V1 + "GetModel": "metadata",
}
_MODEL = r"/v2/models/[^/]+(?:/versions/[^/]+)?"
REST_GROUPS = [
    (re.compile(r"/v2/repository(?:/.*)?"), "repository"),
    (re.compile(_MODEL + "/config"), "model-config"),
    (re.compile(r"/v2/models/stats|" + _MODEL + "/stats"), "statistics"),
    (re.compile(r"/v2/?|" + _MODEL), "metadata"),
    (re.compile(r"/|/v1/compare|/v1/latency|/openapi\.json|/docs(?:/[^/]+)?"), "page"),
]
_HEADER = re.compile(r"[a-z0-9][a-z0-9_.-]*")


@dataclass(frozen=True)
class Restriction:
    header: str  # lower case, as gRPC metadata keys are
    value: str = field(repr=False)

    def allows(self, given: str | None) -> bool:
        return given is not None and hmac.compare_digest(given.encode(), self.value.encode())

    def denial(self, group: str) -> str:
        return f"the {group} API requires the header {self.header!r} with its key (--restricted-api)"


def parse_restrictions(text: str) -> dict[str, Restriction]:
    """group -> its restriction; ValueError (never quoting a value) for a bad specification."""
    restrictions: dict[str, Restriction] = {}
    for part in filter(None, (p.strip() for p in text.split(";"))):
        groups, _, requirement = part.partition(":")
        header, equals, value = requirement.partition("=")
        header = header.strip().lower()
        if not equals or not value or not _HEADER.fullmatch(header):
            raise ValueError(
                "each restriction is GROUPS:HEADER=VALUE, e.g. repository,statistics:x-admin-key=…"
            )
        for group in (g.strip() for g in groups.split(",")):
            if group not in GROUPS:
                raise ValueError(
                    f"an unknown group (not quoted: it may be a key); the groups: {', '.join(GROUPS)}"
                )
            if group in restrictions:
                raise ValueError(f"the group {group!r} is restricted twice")
            restrictions[group] = Restriction(header, value)
    return restrictions


def rest_group(path: str) -> str | None:
    return next((group for pattern, group in REST_GROUPS if pattern.fullmatch(path)), None)
