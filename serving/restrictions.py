"""`--restricted-api`: groups of administrative APIs that answer only requests carrying a header, as
Triton's `--grpc-restricted-protocol` / `--http-restricted-api`, on gRPC (metadata) and REST alike.

Syntax: `GROUPS:HEADER=VALUE`, several separated by `;`, e.g.
`repository,statistics:x-admin-key=s3cret;page:x-page-key=other`. Groups:

- repository: V2 repository index, load and unload;
- model-config: V2 model configuration;
- statistics: V2 model statistics;
- metadata: V2 server and model metadata, seqserve.v1 ListModels and GetModel, TF Serving's model
  status and metadata (gRPC GetModelStatus and GetModelMetadata, REST GET /v1/models/<name>[/...]);
- page: the compare page and its JSON routes (/, /v1/compare, /v1/latency), the OpenAPI document
  and its browser (/openapi.json, /docs).

Inference, health and readiness are never restricted. Every gRPC method and every REST route of the
server is in `GRPC_ACCESS` / `REST_ACCESS`, assigned to a group or declared PUBLIC
(tests/reliability/test_restricted_api.py enumerates the running server's and fails on any other).
A request without the header, or with another
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
PUBLIC = "public"  # what every caller may use: inference, health, readiness, reflection
V2 = "/inference.GRPCInferenceService/"
V1 = "/seqserve.v1.Classifier/"
TFS_PREDICTION = "/tensorflow.serving.PredictionService/"
TFS_MODEL = "/tensorflow.serving.ModelService/"
_V2_UNOFFERED = (
    "SystemSharedMemoryStatus", "SystemSharedMemoryRegister", "SystemSharedMemoryUnregister",
    "CudaSharedMemoryStatus", "CudaSharedMemoryRegister", "CudaSharedMemoryUnregister",
    "TraceSetting", "LogSettings",
)  # fmt: skip


def _methods(prefix: str, *names: str) -> list[str]:
    return [prefix + name for name in names]


# Every gRPC method of the port -> the group that restricts it, or PUBLIC. Methods the server does not
# offer (they answer UNIMPLEMENTED) are public: there is nothing behind them.
GRPC_ACCESS: dict[str, str] = {
    **dict.fromkeys(
        _methods(V2, "RepositoryIndex", "RepositoryModelLoad", "RepositoryModelUnload"), "repository"
    ),
    V2 + "ModelConfig": "model-config",
    V2 + "ModelStatistics": "statistics",
    **dict.fromkeys(
        [
            *_methods(V2, "ServerMetadata", "ModelMetadata"),
            *_methods(V1, "ListModels", "GetModel"),
            TFS_PREDICTION + "GetModelMetadata",
            TFS_MODEL + "GetModelStatus",
        ],
        "metadata",
    ),
    **dict.fromkeys(
        [
            *_methods(V1, "Classify", "ClassifyStream", "Compare", "Explain"),
            *_methods(V2, "ServerLive", "ServerReady", "ModelReady", "ModelInfer", "ModelStreamInfer"),
            *_methods(V2, *_V2_UNOFFERED),
            *_methods(TFS_PREDICTION, "Predict", "Classify", "Regress", "MultiInference"),
            TFS_MODEL + "HandleReloadConfigRequest",
            *_methods("/grpc.health.v1.Health/", "Check", "Watch"),
            "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
        ],
        PUBLIC,
    ),
}
_V2_MODEL = ("/v2/models/{model}", "/v2/models/{model}/versions/{version}")
_TFS_MODEL = (
    "/v1/models/{model}",
    "/v1/models/{model}/versions/{version}",
    "/v1/models/{model}/labels/{label}",
)
# Every route of the HTTP port (as aiohttp writes it, `resource.canonical`) -> its group, or PUBLIC.
REST_ACCESS: dict[str, str] = {
    "/v2/repository/index": "repository",
    "/v2/repository/models/{model}/load": "repository",
    "/v2/repository/models/{model}/unload": "repository",
    **{model + "/config": "model-config" for model in _V2_MODEL},
    "/v2/models/stats": "statistics",
    **{model + "/stats": "statistics" for model in _V2_MODEL},
    "/v2": "metadata",
    "/v2/": "metadata",
    **dict.fromkeys(_V2_MODEL, "metadata"),
    **dict.fromkeys(_TFS_MODEL, "metadata"),
    **{model + "/metadata": "metadata" for model in _TFS_MODEL},
    **dict.fromkeys(("/", "/v1/compare", "/v1/latency", "/openapi.json", "/docs", "/docs/{asset}"), "page"),
    **dict.fromkeys(
        ("/v2/health/live", "/v2/health/ready", "/v1/models/{model}:explain", "/v1/explain"), PUBLIC
    ),
    **{model + suffix: PUBLIC for model in _V2_MODEL for suffix in ("/ready", "/infer")},
    **{model + verb: PUBLIC for model in _TFS_MODEL for verb in (":predict", ":classify")},
}
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


def grpc_access(method: str) -> str | None:
    """The group of a gRPC method, PUBLIC, or None for a method of no service the server has."""
    return GRPC_ACCESS.get(method)


def rest_access(route: str) -> str | None:
    """The group of a REST route (its canonical path), PUBLIC, or None for a path with no route."""
    return REST_ACCESS.get(route)
