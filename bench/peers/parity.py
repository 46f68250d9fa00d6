"""Parity before measuring: every server but the floor must answer the same probabilities (within
PARITY_TOLERANCE) to the same real texts over V2 ModelInfer, or the comparison is not of the same work."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from bench.peers.servers import PROTOCOLS, Served

PARITY_PROTOCOL = "v2"
PARITY_TEXTS = 48
PARITY_TOLERANCE = 1e-5


class ParityError(Exception):
    """A server answers other probabilities than the reference server to the same texts."""


def check_parity(answers: Mapping[str, np.ndarray], reference: str, model: str) -> float:
    """The largest difference from `reference`'s answers; raises ParityError naming every server that
    differs by more than PARITY_TOLERANCE (or answers another shape)."""
    expected = answers[reference]
    worst, differing = 0.0, []
    for name, got in answers.items():
        if got.shape != expected.shape:
            differing.append(f"{name} answered shape {got.shape}, {reference} {expected.shape}")
            continue
        difference = float(np.abs(got - expected).max()) if got.size else 0.0
        worst = max(worst, difference)
        if not difference <= PARITY_TOLERANCE:
            differing.append(f"{name} differs from {reference} by up to {difference:.2e}")
    if differing:
        raise ParityError(
            f"{model}: not the same probabilities to the same {len(expected)} texts (tolerance "
            f"{PARITY_TOLERANCE:g}): {'; '.join(differing)}. The comparison would not be of the same "
            "work; fix the server (or its padding) before measuring."
        )
    return worst


def v2_probabilities(address: str, model: str, texts: Sequence[str]) -> np.ndarray:
    """The `probabilities` a server answers over V2 ModelInfer to one request of `texts`."""
    import tritonclient.grpc as triton

    client = triton.InferenceServerClient(address)
    try:
        text = triton.InferInput("text", [len(texts)], "BYTES")
        text.set_data_from_numpy(np.array([t.encode() for t in texts], dtype=object))
        return np.asarray(client.infer(model, [text], client_timeout=60).as_numpy("probabilities"))
    finally:
        client.close()


def served_parity(servers: Sequence[Served], models: Sequence[str], texts: Sequence[str]) -> dict[str, float]:
    """model -> the largest difference between the servers that answer the models' probabilities;
    raises ParityError on the first model where one differs, or for a server it cannot ask (one that
    does not speak V2 ModelInfer is never measured unchecked)."""
    unchecked = [s.name for s in servers if s.parity and PARITY_PROTOCOL not in s.protocols]
    if unchecked:
        raise ParityError(
            f"{', '.join(unchecked)} speak(s) no {PROTOCOLS[PARITY_PROTOCOL]}: their answers cannot be "
            "compared; give bench.peers.parity.served_parity a client for their protocol"
        )
    worst = {}
    for model in models:
        answering = [s for s in servers if s.parity and s.serves(model)]
        answers = {s.name: v2_probabilities(s.server.address, model, texts) for s in answering}
        worst[model] = check_parity(answers, answering[0].name, model)
    return worst
