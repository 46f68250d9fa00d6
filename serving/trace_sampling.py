"""Which calls are traced, decided before anything of OpenTelemetry is touched.

A call that is not sampled must cost next to nothing, so the decision is made here, in plain Python:
the caller's W3C `traceparent` is read as the SDK's propagator reads it (`parse_traceparent`), and
the sampler `OTEL_TRACES_SAMPLER` / `OTEL_TRACES_SAMPLER_ARG` name decides as the SDK's would:

- `always_on`, `always_off`;
- `traceidratio`: sampled when the low 64 bits of the trace id (the caller's, or a new one) are below
  ratio x 2^64 (the SDK's TraceIdRatioBased);
- `parentbased_always_on`, `parentbased_always_off`, `parentbased_traceidratio` (the default is
  `parentbased_always_on`): a valid `traceparent` decides by its sampled flag; a call without one
  is a root, decided by the part after `parentbased_`.

A root the sampler takes gets the trace id it was decided on (`Sampled.trace_id`), which
serving.tracing hands to the SDK: a downstream sampler of the same ratio takes the same traces.
Unlike the SDK, which falls back to its default with a warning, an unknown sampler or a ratio that is
not a number in [0, 1] is refused at start-up (serving.cli). `OTEL_PROPAGATORS` is honoured as far as
this server can: `traceparent` is read when it lists `tracecontext` (the default); `baggage` and
`none` are accepted and do nothing here.
"""

from __future__ import annotations

import random
import re
from collections.abc import Mapping
from dataclasses import dataclass

from seqserve.tracing import TracingConfigError

SAMPLER_VARIABLE, SAMPLER_ARG_VARIABLE = "OTEL_TRACES_SAMPLER", "OTEL_TRACES_SAMPLER_ARG"
PROPAGATORS_VARIABLE = "OTEL_PROPAGATORS"
DEFAULT_SAMPLER = "parentbased_always_on"
RATIO_SAMPLERS = ("traceidratio", "parentbased_traceidratio")
SAMPLERS = ("always_on", "always_off", "parentbased_always_on", "parentbased_always_off", *RATIO_SAMPLERS)
KNOWN_PROPAGATORS = ("tracecontext", "baggage", "none")
TRACE_ID_LOW_BITS = (1 << 64) - 1  # what TraceIdRatioBased compares with its bound
# The SDK propagator's own pattern (opentelemetry.trace.propagation.tracecontext), searched as it does.
_TRACEPARENT = re.compile(
    r"^[ \t]*([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(?:(-.*)|[ \t]*)$"
)
TRACEPARENT_MAX_LENGTH = 512
_NO_TRACE_ID, _NO_SPAN_ID = "0" * 32, "0" * 16


@dataclass(frozen=True, slots=True)
class TraceParent:
    """A caller's span, as its valid `traceparent` names it."""

    trace_id: int
    span_id: int
    flags: int  # W3C trace-flags: 0x01 sampled, 0x02 random trace id

    @property
    def sampled(self) -> bool:
        return bool(self.flags & 1)


def parse_traceparent(value: str) -> TraceParent | None:
    """The W3C rules as the SDK applies them: None for a value it would ignore (too long, malformed,
    version ff, an all-zero id, or version 00 with anything after the flags)."""
    if len(value) > TRACEPARENT_MAX_LENGTH:
        return None
    match = _TRACEPARENT.search(value)
    if match is None:
        return None
    version, trace_id, span_id, flags, rest = match.groups()
    if version == "ff" or (version == "00" and rest) or trace_id == _NO_TRACE_ID or span_id == _NO_SPAN_ID:
        return None
    return TraceParent(int(trace_id, 16), int(span_id, 16), int(flags, 16))


@dataclass(frozen=True, slots=True)
class Sampled:
    """A call to trace: its trace id, and the caller's span when it continues the caller's trace."""

    trace_id: int
    parent: TraceParent | None


@dataclass(frozen=True)
class SamplerSetting:
    name: str  # one of SAMPLERS
    ratio: float  # of roots (traceidratio) or of every trace; 1.0 / 0.0 for always_on / always_off
    reads_traceparent: bool  # OTEL_PROPAGATORS lists tracecontext

    @property
    def parent_based(self) -> bool:
        return self.name.startswith("parentbased_")

    @property
    def bound(self) -> int:
        """TraceIdRatioBased.get_bound_for_rate: a trace id is sampled when its low bits are below."""
        return round(self.ratio * (TRACE_ID_LOW_BITS + 1))


def sampler_setting(environ: Mapping[str, str]) -> SamplerSetting:
    """The sampler the OTEL_* variables name; TracingConfigError for one this server cannot use."""
    name = environ.get(SAMPLER_VARIABLE, "").strip().lower() or DEFAULT_SAMPLER
    if name not in SAMPLERS:
        raise TracingConfigError(f"{SAMPLER_VARIABLE}={name!r} unknown; use one of {', '.join(SAMPLERS)}")
    ratio = {"always_off": 0.0, "parentbased_always_off": 0.0}.get(name, 1.0)
    given = environ.get(SAMPLER_ARG_VARIABLE, "").strip()
    if name in RATIO_SAMPLERS and given:
        try:
            ratio = float(given)
        except ValueError:
            ratio = -1.0
        if not 0.0 <= ratio <= 1.0:
            raise TracingConfigError(
                f"{SAMPLER_ARG_VARIABLE}={given!r}: {name} takes a ratio from 0 to 1 (e.g. 0.01 for 1 %)"
            )
    listed = [p.strip() for p in environ.get(PROPAGATORS_VARIABLE, "").lower().split(",") if p.strip()]
    unknown = [p for p in listed if p not in KNOWN_PROPAGATORS]
    if unknown:
        raise TracingConfigError(
            f"{PROPAGATORS_VARIABLE}={', '.join(listed)!r}: {', '.join(unknown)} unsupported; the server "
            "reads W3C trace context (tracecontext, baggage or none)"
        )
    return SamplerSetting(name, ratio, not listed or "tracecontext" in listed)


class TraceSampler:
    """`decide(traceparent)`: the call's `Sampled`, or None for a call that is not traced."""

    def __init__(self, setting: SamplerSetting) -> None:
        self._bound = setting.bound
        self._parent_based = setting.parent_based
        self._reads_traceparent = setting.reads_traceparent

    def decide(self, traceparent: str | None) -> Sampled | None:
        parent = None
        if traceparent is not None and self._reads_traceparent:
            parent = parse_traceparent(traceparent)
        if parent is None:
            low = random.getrandbits(64)
            if low >= self._bound:
                return None
            return Sampled((random.getrandbits(64) << 64 | low) or 1 << 64, None)
        if parent.sampled if self._parent_based else parent.trace_id & TRACE_ID_LOW_BITS < self._bound:
            return Sampled(parent.trace_id, parent)
        return None
