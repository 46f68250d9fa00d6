"""The server's settings: one frozen dataclass, built once from flags and SEQSERVE_* environment variables.

Precedence: command-line flag > environment variable > default. Every field has exactly one flag
(`--max-batch-size`) and one variable (`SEQSERVE_MAX_BATCH_SIZE`), derived from the field name, so the
two can never drift apart.

The default host is 127.0.0.1: a server started on a laptop or a shared machine is not reachable from the
network unless someone asks for it (`--host 0.0.0.0`, the usual choice inside a container).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from seqserve.numbers import non_negative_float, non_negative_int, positive_float, positive_int
from serving.restrictions import Restriction, parse_restrictions

RUNTIMES = ("onnx", "tf")
LOG_FORMATS = ("json", "text")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
# As Triton's --model-control-mode: "none" refuses run-time load/unload requests, "explicit" allows them.
MODEL_CONTROL_MODES = ("none", "explicit")


_LABEL = re.compile(r"[A-Za-z0-9_.-]+")
# (model, label, version): TF Serving's version labels, e.g. stable -> 1, canary -> 2
VersionLabel = tuple[str, str, int]
# Fields holding keys: their values appear in no message.
SECRET_FIELDS = frozenset({"restricted_api"})


class SettingsError(ValueError):
    """A flag or environment variable has a value the server cannot use."""


@dataclass(frozen=True)
class Settings:
    model_repository: Path = Path("models")
    host: str = "127.0.0.1"
    port: int = 8500
    rest_port: int = 8501
    metrics_host: str = ""  # empty = same as host
    metrics_port: int = 8502
    runtime: str = "onnx"
    max_batch_size: int = 64
    max_queue_delay_us: int = 1000
    max_queue_size: int = 1024
    max_texts_per_request: int = 256
    max_text_bytes: int = 16384
    max_compare_rounds: int = 20
    max_message_bytes: int = 4 * 1024 * 1024
    load_versions: int = 1
    inference_threads: int = 2
    max_concurrent_explains: int = 1
    inline_max_texts: int = 1
    intra_op_threads: int = 1
    workers: int = 1
    worker_timeout_s: float = 10.0
    worker_load_timeout_s: float = 300.0
    worker_max_restarts: int = 5
    worker_restart_window_s: float = 60.0
    worker_max_rss_mib: int = 0  # 0 = workers are never recycled for their memory
    metrics_head_timeout_s: float = 10.0
    metrics_max_connections: int = 32
    rest_keepalive_timeout_s: float = 10.0
    rest_body_timeout_s: float = 30.0
    rest_max_connections: int = 1000
    grpc_handshake_timeout_s: float = 10.0
    grpc_max_connections: int = 0  # 0 = no cap
    grpc_max_connection_idle_s: float = 600.0
    grpc_max_connection_age_s: float = 0.0  # 0 = connections may live forever
    grpc_max_connection_age_grace_s: float = 10.0
    grpc_min_ping_interval_s: float = 10.0
    grpc_max_ping_strikes: int = 2
    grpc_max_concurrent_streams: int = 0  # 0 = grpc core's own (no practical limit)
    grace_period_s: float = 10.0
    poll_interval: float = 0.0  # seconds; 0 = the repository is read only at start-up
    model_control: str = "none"
    tls_cert: str = ""  # PEM files; empty = plaintext gRPC, REST and /metrics
    tls_key: str = ""
    tls_client_ca: str = ""  # PEM CA bundle; set = every client must present a certificate it signed
    log_level: str = "INFO"
    log_format: str = "json"
    log_texts: bool = False
    version_labels: tuple[VersionLabel, ...] = ()
    # GROUPS:HEADER=VALUE[;...] (serving.restrictions); never printed: it holds keys
    restricted_api: str = dataclasses.field(default="", repr=False)

    def __post_init__(self) -> None:
        if bool(self.tls_cert) != bool(self.tls_key):
            raise SettingsError("--tls-cert and --tls-key go together: give both or neither")
        if self.tls_client_ca and not self.tls_cert:
            raise SettingsError("--tls-client-ca (mutual TLS) needs --tls-cert and --tls-key")
        if self.poll_interval > 0 and self.model_control == "explicit":
            raise SettingsError(
                "--poll-interval and --model-control explicit exclude each other: either the repository "
                "or the clients decide which models are loaded"
            )
        try:
            parse_restrictions(self.restricted_api)
        except ValueError as error:
            raise SettingsError(f"--restricted-api: {error}") from None
        if self.workers > 1 and self.model_control == "explicit":
            raise SettingsError(
                "--workers above 1 and --model-control explicit exclude each other: a load or unload request "
                "reaches one worker process only"
            )

    @property
    def restrictions(self) -> dict[str, Restriction]:
        """API group -> the header it requires (--restricted-api)."""
        return parse_restrictions(self.restricted_api)

    @property
    def effective_metrics_host(self) -> str:
        return self.metrics_host or self.host

    @property
    def tls(self) -> bool:
        return bool(self.tls_cert)


def _versions(text: str) -> int:
    """`all` (0) or a positive count of the newest versions to load."""
    return 0 if text.strip().lower() == "all" else positive_int(text)


def _version_labels(text: str) -> tuple[VersionLabel, ...]:
    """`model:label=version,label=version;model:...` -> ((model, label, version), ...)."""
    labels: dict[tuple[str, str], int] = {}
    for group in filter(None, (part.strip() for part in text.split(";"))):
        model, colon, assignments = group.partition(":")
        if not colon or not model.strip():
            raise ValueError(f"{group!r} is not model:label=version[,label=version...]")
        for assignment in assignments.split(","):
            label, equals, version = (part.strip() for part in assignment.partition("="))
            if not equals or not _LABEL.fullmatch(label):
                raise ValueError(f"{assignment.strip()!r} (model {model.strip()!r}) is not label=version")
            if (model.strip(), label) in labels:
                raise ValueError(f"label {label!r} of model {model.strip()!r} is given twice")
            labels[model.strip(), label] = positive_int(version)
    return tuple((model, label, version) for (model, label), version in labels.items())


def _bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"{text!r} is not a boolean")


def _choice(choices: Sequence[str], upper: bool = False) -> Callable[[str], str]:
    def parse(text: str) -> str:
        value = text.upper() if upper else text.lower()
        if value not in choices:
            raise ValueError(f"{text!r} is not one of {', '.join(choices)}")
        return value

    return parse


# field -> (parser of a text value, help)
_OPTIONS: dict[str, tuple[Callable[[str], Any], str]] = {
    "model_repository": (Path, "model repository root (see models/README.md)"),
    "host": (str, "gRPC listen address; 0.0.0.0 exposes the server to the network"),
    "port": (non_negative_int, "gRPC port (0 = any free port, printed at start)"),
    "rest_port": (
        non_negative_int,
        "KServe V2 REST and compare page port, on --host (0 = any free port, printed at start)",
    ),
    "metrics_host": (str, "Prometheus /metrics listen address (default: --host)"),
    "metrics_port": (non_negative_int, "Prometheus /metrics port (0 = any free port)"),
    "runtime": (_choice(RUNTIMES), "runtime for models whose config names none: onnx or tf"),
    "max_batch_size": (positive_int, "most texts the batcher runs together"),
    "max_queue_delay_us": (
        non_negative_int,
        "how long the oldest queued request waits for company, in microseconds (0 = no batching)",
    ),
    "max_queue_size": (positive_int, "requests queued per model before new ones get RESOURCE_EXHAUSTED"),
    "max_texts_per_request": (positive_int, "most texts in one request"),
    "max_text_bytes": (positive_int, "most UTF-8 bytes in one text"),
    "max_compare_rounds": (
        positive_int,
        "most rounds of one Compare: each model answers its texts that many times in a row, and its "
        "figures are the medians over them",
    ),
    "max_message_bytes": (positive_int, "largest gRPC message received or sent"),
    "load_versions": (_versions, "versions of each model to load: 'all' or the newest N"),
    "inference_threads": (
        positive_int,
        "threads running the runtime calls (the batches' tokenizing and the rest run on the event loop)",
    ),
    "max_concurrent_explains": (
        positive_int,
        "explanations computed at once, each on its own thread beside the inference threads; one more "
        "gets RESOURCE_EXHAUSTED, so explaining never starves classification",
    ),
    "inline_max_texts": (
        non_negative_int,
        "a batch of at most this many texts runs its runtime call on the event loop when nothing else "
        "runs or waits and such calls take under 0.5 ms: the loop would sit idle meanwhile (0 = never)",
    ),
    "intra_op_threads": (positive_int, "threads inside one ONNX Runtime / TensorFlow op"),
    "workers": (
        positive_int,
        "server processes sharing the gRPC port (SO_REUSEPORT), each with every model; /metrics sums them",
    ),
    "worker_timeout_s": (
        positive_float,
        "--workers: a ready worker whose event loop answers no heartbeat for this long is killed "
        "(SIGKILL) and replaced",
    ),
    "worker_load_timeout_s": (
        positive_float,
        "--workers: a worker that has not loaded every model this many seconds after it started is "
        "killed (SIGKILL) and replaced, like one that misses its heartbeat",
    ),
    "worker_max_restarts": (
        positive_int,
        "--workers: more worker restarts than this within --worker-restart-window-s is a crash loop: "
        "the server stops and exits 1",
    ),
    "worker_restart_window_s": (positive_float, "--workers: the window of --worker-max-restarts, seconds"),
    "worker_max_rss_mib": (
        non_negative_int,
        "--workers: a worker whose resident memory exceeds this many MiB is replaced; the replacement is "
        "ready before the old one drains (0 = never)",
    ),
    "metrics_head_timeout_s": (
        positive_float,
        "seconds a /metrics client gets to finish its TLS handshake and send its request head before its "
        "connection is closed",
    ),
    "metrics_max_connections": (
        positive_int,
        "open /metrics connections; one beyond it is closed at once",
    ),
    "rest_keepalive_timeout_s": (
        positive_float,
        "a REST connection must send a complete request head within this many seconds of opening (or "
        "of its last answer), else it is closed: the idle keep-alive timeout and the slow-client limit; "
        "it bounds the TLS handshake too",
    ),
    "rest_body_timeout_s": (
        positive_float,
        "a REST request's whole body must arrive within this many seconds of its head, else the request "
        "gets 408 and its connection is closed (a client dripping its body holds a connection no longer)",
    ),
    "rest_max_connections": (
        positive_int,
        "open REST connections per process; one beyond it is closed as it is accepted",
    ),
    "grpc_handshake_timeout_s": (
        positive_float,
        "seconds a new gRPC connection gets for its TLS handshake and HTTP/2 preface and settings",
    ),
    "grpc_max_connections": (non_negative_int, "open gRPC connections per process (0 = no cap)"),
    "grpc_max_connection_idle_s": (
        non_negative_float,
        "a gRPC connection without calls for this long is closed with GOAWAY (0 = never)",
    ),
    "grpc_max_connection_age_s": (
        non_negative_float,
        "a gRPC connection older than this is sent GOAWAY, so clients rebalance (0 = never)",
    ),
    "grpc_max_connection_age_grace_s": (
        non_negative_float,
        "calls running on a connection past --grpc-max-connection-age-s get this long before it closes",
    ),
    "grpc_min_ping_interval_s": (
        non_negative_float,
        "a client's HTTP/2 pings closer together than this count as strikes (keep-alive enforcement)",
    ),
    "grpc_max_ping_strikes": (
        non_negative_int,
        "strikes after which a pinging client gets GOAWAY (0 = unlimited)",
    ),
    "grpc_max_concurrent_streams": (
        non_negative_int,
        "concurrent calls per gRPC connection (0 = grpc's default, no practical limit); a client that "
        "opens more at once on a new connection, before it sees this limit, gets UNAVAILABLE for the rest",
    ),
    "grace_period_s": (
        non_negative_float,
        "seconds to finish in-flight requests on SIGTERM/SIGINT; a second signal stops at once",
    ),
    "poll_interval": (
        non_negative_float,
        "seconds between repository scans that load new versions and unload removed ones (0 = off)",
    ),
    "model_control": (
        _choice(MODEL_CONTROL_MODES),
        "none: KServe V2 load/unload requests are refused; explicit: clients may load and unload models",
    ),
    "tls_cert": (
        str,
        "PEM certificate chain of the gRPC, REST and metrics ports; with --tls-key, TLS on all three",
    ),
    "tls_key": (str, "PEM private key of --tls-cert"),
    "tls_client_ca": (
        str,
        "PEM CA certificates; clients must present a certificate they signed (mTLS) on every port "
        "(REST health checks excepted, for probes)",
    ),
    "log_level": (_choice(LOG_LEVELS, upper=True), "DEBUG, INFO, WARNING or ERROR"),
    "log_format": (_choice(LOG_FORMATS), "json (one object per line) or text (key=value)"),
    "log_texts": (_bool, "include request texts in DEBUG logs (off: texts may be personal data)"),
    "version_labels": (
        _version_labels,
        "TensorFlow Serving version labels, e.g. 'sarcasm-lstm:stable=1,canary=2;imdb-gru:stable=3' "
        "(model_spec.version_label, REST /labels/<label>)",
    ),
    "restricted_api": (
        str,
        "GROUPS:HEADER=VALUE[;...]: these API groups (repository, model-config, statistics, metadata, "
        "page) answer only requests with that header and value, on gRPC and REST (else "
        "PERMISSION_DENIED / 403); e.g. repository,statistics:x-admin-key=KEY. Prefer the environment "
        "variable: it keeps the key out of the process list",
    ),
}


def _flag(field: str) -> str:
    return "--" + field.replace("_", "-")


def _env_var(field: str) -> str:
    return "SEQSERVE_" + field.upper()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="seqserve serve",
        description="Serve the model repository over gRPC (seqserve.v1.Classifier, health, reflection) "
        "with Prometheus metrics. Every flag can also be set as SEQSERVE_<FLAG_NAME> in the environment.",
    )
    defaults = Settings()
    for field in dataclasses.fields(Settings):
        parse, help_text = _OPTIONS[field.name]
        default = getattr(defaults, field.name)
        shown_default = f", default {default!s}" if default not in ("", ()) else ""
        full_help = f"{help_text} [env {_env_var(field.name)}{shown_default}]"
        if parse is _bool:
            parser.add_argument(
                _flag(field.name), action=argparse.BooleanOptionalAction, default=None, help=full_help
            )
        else:
            parser.add_argument(_flag(field.name), type=str, default=None, help=full_help)
    return parser


def build_settings(argv: Sequence[str], environ: Mapping[str, str] | None = None) -> Settings:
    """Parse flags over environment over defaults; raises SettingsError naming the bad source."""
    env = os.environ if environ is None else environ
    namespace = build_parser().parse_args(list(argv))
    values: dict[str, Any] = {}
    for field in dataclasses.fields(Settings):
        parse, _ = _OPTIONS[field.name]
        flag_value = getattr(namespace, field.name)
        if flag_value is not None:
            if isinstance(flag_value, bool):
                values[field.name] = flag_value
                continue
            raw, source = flag_value, _flag(field.name)
        elif _env_var(field.name) in env:
            raw, source = env[_env_var(field.name)], _env_var(field.name)
        else:
            continue
        try:
            values[field.name] = parse(raw)
        except ValueError as error:
            shown = "" if field.name in SECRET_FIELDS else f"={raw!r}"
            raise SettingsError(f"{source}{shown}: {error}") from None
    return Settings(**values)
