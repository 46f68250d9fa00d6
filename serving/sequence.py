"""How far each model's rows of token ids are padded: the `sequence` contract of config.pbtxt.

A fixed-length graph (no `sequence` field, as every version written before it existed) takes every row
padded to `max_length`. A variable-length graph ignores the padding after a text, so a batch needs
padding only to its longest text, plus the `trailing_padding` the graph needs for its outputs to equal
full padding (a Conv1D's kernel_size), never beyond `max_length`: the compute a batch of short texts
spends on padding is the cost this saves. Whether the graph really takes a dynamic sequence axis is
checked when the version loads, so a config that claims it wrongly is refused with its reason instead
of failing on the first request.
"""

from __future__ import annotations

from dataclasses import dataclass

from seqserve.v1 import model_config_pb2


class SequenceMismatch(Exception):
    """The config's sequence contract does not fit the tokenizer or the graph."""


@dataclass(frozen=True)
class SequencePadding:
    max_length: int
    variable_length: bool = False
    trailing_padding: int = 0

    @classmethod
    def of(cls, config: model_config_pb2.ModelConfig) -> SequencePadding:
        sequence = config.sequence
        if config.max_length < 1:
            raise SequenceMismatch(f"{config.name}: max_length is {config.max_length}; it must be at least 1")
        if sequence.trailing_padding < 0:
            raise SequenceMismatch(
                f"{config.name}: sequence.trailing_padding is {sequence.trailing_padding}; it cannot be "
                "negative"
            )
        return cls(config.max_length, sequence.variable_length, sequence.trailing_padding)

    def width(self, longest: int) -> int:
        """Columns of a batch whose longest row has `longest` tokens (at least 1: a batch of empty texts)."""
        if not self.variable_length:
            return self.max_length
        return max(1, min(self.max_length, longest + self.trailing_padding))


def check_graph_axis(config: model_config_pb2.ModelConfig, graph_length: int | None, source: str) -> None:
    """Refuse a variable-length config whose graph (`source`) fixes input_ids' axis 1 to `graph_length`."""
    if config.sequence.variable_length and graph_length is not None:
        raise SequenceMismatch(
            f"{config.name} v{config.version}: config.pbtxt says sequence {{ variable_length: true }}, but "
            f"{source} takes input_ids of fixed length {graph_length} on axis 1; export it with a dynamic "
            "sequence axis, or drop variable_length from the config"
        )


def check_tokenizer_length(config: model_config_pb2.ModelConfig, tokenizer_length: int | None) -> None:
    """Refuse a config whose max_length is not the one length its tokenizer truncates and pads to."""
    if tokenizer_length is not None and tokenizer_length != config.max_length:
        raise SequenceMismatch(
            f"{config.name} v{config.version}: {config.tokenizer.path} truncates and pads to "
            f"{tokenizer_length} tokens, but config.pbtxt says max_length {config.max_length}; its "
            "padding/truncation must be max_length"
        )
