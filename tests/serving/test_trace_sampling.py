"""serving.trace_sampling decides as OpenTelemetry's SDK would, without it: the caller's traceparent
read as the SDK's W3C propagator reads it, and each sampler OTEL_TRACES_SAMPLER names deciding as the
SDK's sampler of that name, built by the SDK from the same variables."""

from __future__ import annotations

import random

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.sampling import TraceIdRatioBased
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from seqserve.tracing import TracingConfigError
from serving.trace_sampling import SAMPLERS, TraceSampler, parse_traceparent, sampler_setting

TRACE_ID, SPAN_ID = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"
HEADERS = [
    f"00-{TRACE_ID}-{SPAN_ID}-01",
    f"00-{TRACE_ID}-{SPAN_ID}-00",
    f"00-{TRACE_ID}-{SPAN_ID}-03",  # sampled, random trace id
    f" \t00-{TRACE_ID}-{SPAN_ID}-01 \t",
    f"00-{TRACE_ID}-{SPAN_ID}-01\n",
    f"00-{TRACE_ID}-{SPAN_ID}-01-extra",  # version 00 takes nothing after the flags
    f"01-{TRACE_ID}-{SPAN_ID}-01-extra",  # a later version may add fields
    f"ff-{TRACE_ID}-{SPAN_ID}-01",  # version ff is invalid
    f"00-{'0' * 32}-{SPAN_ID}-01",
    f"00-{TRACE_ID}-{'0' * 16}-01",
    f"00-{TRACE_ID.upper()}-{SPAN_ID}-01",  # upper-case hex is invalid
    f"00-{TRACE_ID[:-1]}-{SPAN_ID}-01",
    f"00-{TRACE_ID}-{SPAN_ID}-1",
    f"00-{TRACE_ID}-{SPAN_ID}-01-{'x' * 500}",  # longer than 512 characters
    f"01-{TRACE_ID}-{SPAN_ID}-01-{'x' * 400}",
    "",
    "garbage",
]


def sdk_parent(header: str) -> trace.SpanContext:
    """The caller's span as the SDK's propagator extracts it (invalid when it ignores the header)."""
    extracted = TraceContextTextMapPropagator().extract({"traceparent": header})
    return trace.get_current_span(extracted).get_span_context()


@pytest.mark.parametrize("header", HEADERS)
def test_traceparent_is_read_as_the_sdks_propagator_reads_it(header: str) -> None:
    expected = sdk_parent(header)
    parsed = parse_traceparent(header)
    if not expected.is_valid:
        assert parsed is None
    else:
        assert parsed is not None
        assert (parsed.trace_id, parsed.span_id, parsed.flags) == (
            expected.trace_id,
            expected.span_id,
            int(expected.trace_flags),
        )


def random_headers(count: int, seed: int) -> list[str]:
    """Valid traceparents, half of them sampled, with random ids."""
    draw = random.Random(seed)
    return [
        f"00-{draw.getrandbits(128):032x}-{draw.getrandbits(64) or 1:016x}-{draw.choice(('00', '01', '03'))}"
        for _ in range(count)
    ]


@pytest.mark.parametrize("name", SAMPLERS)
def test_each_sampler_decides_a_callers_trace_as_the_sdks_does(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", name)
    monkeypatch.setenv("OTEL_TRACES_SAMPLER_ARG", "0.25")
    sdk = TracerProvider().sampler  # the SDK reads the same variables
    sampler = TraceSampler(sampler_setting({"OTEL_TRACES_SAMPLER": name, "OTEL_TRACES_SAMPLER_ARG": "0.25"}))
    decided = []
    for header in random_headers(400, seed=len(name)):
        parent = trace.set_span_in_context(trace.NonRecordingSpan(sdk_parent(header)))
        expected = sdk.should_sample(parent, sdk_parent(header).trace_id, "call").decision.is_sampled()
        sampled = sampler.decide(header)
        assert (sampled is not None) == expected, header
        if sampled is not None:
            assert sampled.trace_id == int(header[3:35], 16) and sampled.parent is not None
        decided.append(expected)
    assert any(decided) == (name != "always_off") and all(decided) == (name == "always_on")


@pytest.mark.parametrize(
    ("name", "ratio"),
    [("always_on", 1.0), ("always_off", 0.0), ("parentbased_always_on", 1.0), ("parentbased_always_off", 0.0),
     ("traceidratio", 0.25), ("parentbased_traceidratio", 0.25)],
)  # fmt: skip
def test_a_root_is_sampled_on_a_trace_id_the_sdks_sampler_takes(
    name: str, ratio: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Calls without a traceparent (or with one the propagator ignores): the sampled share is the
    ratio, and every sampled root's trace id is one the SDK's sampler samples too."""
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", name)
    monkeypatch.setenv("OTEL_TRACES_SAMPLER_ARG", "0.25")
    sdk = TracerProvider().sampler
    sampler = TraceSampler(sampler_setting({"OTEL_TRACES_SAMPLER": name, "OTEL_TRACES_SAMPLER_ARG": "0.25"}))
    roots = [sampler.decide(None if i % 2 else "garbage") for i in range(4000)]
    sampled = [root for root in roots if root is not None]
    assert len(sampled) == pytest.approx(ratio * len(roots), abs=150)  # > 5 standard deviations
    for root in sampled:
        assert root.parent is None and 0 < root.trace_id < 1 << 128
        assert sdk.should_sample(None, root.trace_id, "call").decision.is_sampled()
    assert len({root.trace_id for root in sampled}) == len(sampled)


def test_the_ratio_is_taken_from_the_trace_ids_low_64_bits() -> None:
    """TraceIdRatioBased's rule: a caller's trace id is sampled when its low 64 bits are below
    ratio x 2^64, whatever its high bits."""
    sampler = TraceSampler(
        sampler_setting({"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.5"})
    )
    bound = TraceIdRatioBased.get_bound_for_rate(0.5)
    for low, sampled in ((bound - 1, True), (bound, False), (0, True), ((1 << 64) - 1, False)):
        header = f"00-{(0xFFFF << 64) | low:032x}-{SPAN_ID}-00"
        assert (sampler.decide(header) is not None) == sampled, hex(low)


def test_without_tracecontext_in_the_propagators_a_traceparent_is_not_read() -> None:
    setting = sampler_setting({"OTEL_TRACES_SAMPLER": "parentbased_always_off", "OTEL_PROPAGATORS": "none"})
    assert TraceSampler(setting).decide(f"00-{TRACE_ID}-{SPAN_ID}-01") is None  # a root: never sampled
    setting = sampler_setting(
        {"OTEL_TRACES_SAMPLER": "parentbased_always_off", "OTEL_PROPAGATORS": "baggage, tracecontext"}
    )
    assert TraceSampler(setting).decide(f"00-{TRACE_ID}-{SPAN_ID}-01") is not None


def test_the_default_and_the_settings_it_refuses() -> None:
    default = sampler_setting({})
    assert (default.name, default.ratio, default.reads_traceparent) == ("parentbased_always_on", 1.0, True)
    assert sampler_setting({"OTEL_TRACES_SAMPLER": "TraceIdRatio"}).ratio == 1.0  # no argument: 1.0
    assert (
        sampler_setting({"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.01"}).ratio
        == 0.01
    )
    with pytest.raises(
        TracingConfigError, match=r"OTEL_TRACES_SAMPLER='ratio' unknown; use one of always_on"
    ):
        sampler_setting({"OTEL_TRACES_SAMPLER": "ratio"})
    for argument in ("1%", "1.5", "-0.1", "nan"):
        with pytest.raises(TracingConfigError, match=r"OTEL_TRACES_SAMPLER_ARG=.*takes a ratio from 0 to 1"):
            sampler_setting(
                {"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": argument}
            )
    with pytest.raises(TracingConfigError, match=r"OTEL_PROPAGATORS='tracecontext, b3': b3 unsupported"):
        sampler_setting({"OTEL_PROPAGATORS": "tracecontext,b3"})
