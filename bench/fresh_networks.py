"""Untrained networks of the model zoo, exported like trained ones, for input lengths nothing was trained at.

A trained model's input length is fixed by its export, and a longer one would need a new training
run. Inference cost does not depend on the weights' values, so a freshly initialised network of the
same architecture and sizes, built by training.architectures and exported by training.export (same
converters, same parity check), runs exactly the graph a trained one would.

Run as its own process by bench.claims, so that Keras and the converters never share the measuring
process (nor fix TensorFlow's thread pools before the serving runtime configures them):

    .venv/bin/python -m bench.fresh_networks --output DIR --vocab-size 10000 --num-outputs 1 \
        --lengths 120,512 --architectures flatten,gap,rnn,lstm,lstm2,gru,conv
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Sequence
from pathlib import Path

import keras
import numpy as np

from seqserve.v1 import model_config_pb2
from training.architectures import ARCHITECTURES, build_model, sequence_policy
from training.export import export_model
from training.repository import CONFIG_FILE, write_config
from training.settings import ArchitectureSettings, TrainSettings

PARITY_EXAMPLES = 16
SEED = 0


def fresh_name(architecture: str, max_length: int) -> str:
    return f"fresh-{architecture}-{max_length}"


def _train_default(field: str) -> object:
    """A TrainSettings default (the training CLI's opset and parity tolerance)."""
    return next(f.default for f in dataclasses.fields(TrainSettings) if f.name == field)


def export_fresh(
    architecture: str, vocab_size: int, num_outputs: int, max_length: int, directory: Path
) -> model_config_pb2.ModelConfig:
    """Builds, exports and describes (config.pbtxt) one untrained network in `directory`."""
    keras.utils.set_random_seed(SEED)
    settings = ArchitectureSettings(vocab_size=vocab_size, max_length=max_length, num_outputs=num_outputs)
    model = build_model(architecture, settings)
    parity_ids = np.random.default_rng(SEED).integers(
        1, vocab_size, (PARITY_EXAMPLES, max_length), dtype=np.int32
    )
    directory.mkdir(parents=True, exist_ok=True)
    policy = sequence_policy(architecture, settings)
    exported = export_model(
        model,
        directory,
        max_length=max_length,
        policy=policy,
        parity_ids=parity_ids,
        tolerance=float(_train_default("parity_tolerance")),  # type: ignore[arg-type]
        opset=int(_train_default("onnx_opset")),  # type: ignore[call-overload]
    )
    config = model_config_pb2.ModelConfig(
        name=fresh_name(architecture, max_length),
        version=1,
        architecture=architecture,
        labels=[str(i) for i in range(max(2, num_outputs))],
        max_length=max_length,
        output_kind=(
            model_config_pb2.OUTPUT_KIND_SIGMOID if num_outputs == 1 else model_config_pb2.OUTPUT_KIND_SOFTMAX
        ),
        parameter_count=model.count_params(),
        export=exported.summary(),
        sequence=policy.config(),
    )
    write_config(directory / CONFIG_FILE, config)
    return config


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", type=Path, required=True, help="directory for <name>/ of each network")
    parser.add_argument("--vocab-size", type=int, required=True)
    parser.add_argument("--num-outputs", type=int, required=True)
    parser.add_argument("--lengths", required=True, help="comma-separated input lengths")
    parser.add_argument("--architectures", default=",".join(ARCHITECTURES))
    args = parser.parse_args(argv)
    for max_length in (int(x) for x in args.lengths.split(",")):
        for architecture in args.architectures.split(","):
            name = fresh_name(architecture, max_length)
            config = export_fresh(
                architecture, args.vocab_size, args.num_outputs, max_length, args.output / name
            )
            print(f"  exported {name}: ONNX via {config.export.onnx_converter}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
