from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class OutputKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    OUTPUT_KIND_UNSPECIFIED: _ClassVar[OutputKind]
    OUTPUT_KIND_SIGMOID: _ClassVar[OutputKind]
    OUTPUT_KIND_SOFTMAX: _ClassVar[OutputKind]
OUTPUT_KIND_UNSPECIFIED: OutputKind
OUTPUT_KIND_SIGMOID: OutputKind
OUTPUT_KIND_SOFTMAX: OutputKind

class TokenizerRef(_message.Message):
    __slots__ = ("path", "sha256")
    PATH_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    path: str
    sha256: str
    def __init__(self, path: _Optional[str] = ..., sha256: _Optional[str] = ...) -> None: ...

class TrainingSummary(_message.Message):
    __slots__ = ("epochs", "train_examples", "validation_examples", "train_accuracy", "validation_accuracy", "validation_loss", "best_validation_accuracy", "mean_epoch_seconds", "trained_at", "seed", "published_epoch", "test_examples", "test_accuracy", "test_loss", "seeds", "split_seed", "validation_fraction")
    EPOCHS_FIELD_NUMBER: _ClassVar[int]
    TRAIN_EXAMPLES_FIELD_NUMBER: _ClassVar[int]
    VALIDATION_EXAMPLES_FIELD_NUMBER: _ClassVar[int]
    TRAIN_ACCURACY_FIELD_NUMBER: _ClassVar[int]
    VALIDATION_ACCURACY_FIELD_NUMBER: _ClassVar[int]
    VALIDATION_LOSS_FIELD_NUMBER: _ClassVar[int]
    BEST_VALIDATION_ACCURACY_FIELD_NUMBER: _ClassVar[int]
    MEAN_EPOCH_SECONDS_FIELD_NUMBER: _ClassVar[int]
    TRAINED_AT_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    PUBLISHED_EPOCH_FIELD_NUMBER: _ClassVar[int]
    TEST_EXAMPLES_FIELD_NUMBER: _ClassVar[int]
    TEST_ACCURACY_FIELD_NUMBER: _ClassVar[int]
    TEST_LOSS_FIELD_NUMBER: _ClassVar[int]
    SEEDS_FIELD_NUMBER: _ClassVar[int]
    SPLIT_SEED_FIELD_NUMBER: _ClassVar[int]
    VALIDATION_FRACTION_FIELD_NUMBER: _ClassVar[int]
    epochs: int
    train_examples: int
    validation_examples: int
    train_accuracy: float
    validation_accuracy: float
    validation_loss: float
    best_validation_accuracy: float
    mean_epoch_seconds: float
    trained_at: str
    seed: int
    published_epoch: int
    test_examples: int
    test_accuracy: float
    test_loss: float
    seeds: _containers.RepeatedScalarFieldContainer[int]
    split_seed: int
    validation_fraction: float
    def __init__(self, epochs: _Optional[int] = ..., train_examples: _Optional[int] = ..., validation_examples: _Optional[int] = ..., train_accuracy: _Optional[float] = ..., validation_accuracy: _Optional[float] = ..., validation_loss: _Optional[float] = ..., best_validation_accuracy: _Optional[float] = ..., mean_epoch_seconds: _Optional[float] = ..., trained_at: _Optional[str] = ..., seed: _Optional[int] = ..., published_epoch: _Optional[int] = ..., test_examples: _Optional[int] = ..., test_accuracy: _Optional[float] = ..., test_loss: _Optional[float] = ..., seeds: _Optional[_Iterable[int]] = ..., split_seed: _Optional[int] = ..., validation_fraction: _Optional[float] = ...) -> None: ...

class SequenceInput(_message.Message):
    __slots__ = ("variable_length", "trailing_padding")
    VARIABLE_LENGTH_FIELD_NUMBER: _ClassVar[int]
    TRAILING_PADDING_FIELD_NUMBER: _ClassVar[int]
    variable_length: bool
    trailing_padding: int
    def __init__(self, variable_length: _Optional[bool] = ..., trailing_padding: _Optional[int] = ...) -> None: ...

class ExportSummary(_message.Message):
    __slots__ = ("onnx_file", "saved_model_dir", "input_name", "output_name", "onnx_opset", "onnx_converter", "parity_max_abs_error", "parity_examples")
    ONNX_FILE_FIELD_NUMBER: _ClassVar[int]
    SAVED_MODEL_DIR_FIELD_NUMBER: _ClassVar[int]
    INPUT_NAME_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_NAME_FIELD_NUMBER: _ClassVar[int]
    ONNX_OPSET_FIELD_NUMBER: _ClassVar[int]
    ONNX_CONVERTER_FIELD_NUMBER: _ClassVar[int]
    PARITY_MAX_ABS_ERROR_FIELD_NUMBER: _ClassVar[int]
    PARITY_EXAMPLES_FIELD_NUMBER: _ClassVar[int]
    onnx_file: str
    saved_model_dir: str
    input_name: str
    output_name: str
    onnx_opset: int
    onnx_converter: str
    parity_max_abs_error: float
    parity_examples: int
    def __init__(self, onnx_file: _Optional[str] = ..., saved_model_dir: _Optional[str] = ..., input_name: _Optional[str] = ..., output_name: _Optional[str] = ..., onnx_opset: _Optional[int] = ..., onnx_converter: _Optional[str] = ..., parity_max_abs_error: _Optional[float] = ..., parity_examples: _Optional[int] = ...) -> None: ...

class ServingOptions(_message.Message):
    __slots__ = ("runtime", "max_batch_size", "max_queue_delay_us")
    RUNTIME_FIELD_NUMBER: _ClassVar[int]
    MAX_BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    MAX_QUEUE_DELAY_US_FIELD_NUMBER: _ClassVar[int]
    runtime: str
    max_batch_size: int
    max_queue_delay_us: int
    def __init__(self, runtime: _Optional[str] = ..., max_batch_size: _Optional[int] = ..., max_queue_delay_us: _Optional[int] = ...) -> None: ...

class ModelConfig(_message.Message):
    __slots__ = ("name", "version", "architecture", "dataset", "labels", "max_length", "output_kind", "tokenizer", "parameter_count", "training", "export", "serving", "sequence")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    ARCHITECTURE_FIELD_NUMBER: _ClassVar[int]
    DATASET_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    MAX_LENGTH_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_KIND_FIELD_NUMBER: _ClassVar[int]
    TOKENIZER_FIELD_NUMBER: _ClassVar[int]
    PARAMETER_COUNT_FIELD_NUMBER: _ClassVar[int]
    TRAINING_FIELD_NUMBER: _ClassVar[int]
    EXPORT_FIELD_NUMBER: _ClassVar[int]
    SERVING_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: int
    architecture: str
    dataset: str
    labels: _containers.RepeatedScalarFieldContainer[str]
    max_length: int
    output_kind: OutputKind
    tokenizer: TokenizerRef
    parameter_count: int
    training: TrainingSummary
    export: ExportSummary
    serving: ServingOptions
    sequence: SequenceInput
    def __init__(self, name: _Optional[str] = ..., version: _Optional[int] = ..., architecture: _Optional[str] = ..., dataset: _Optional[str] = ..., labels: _Optional[_Iterable[str]] = ..., max_length: _Optional[int] = ..., output_kind: _Optional[_Union[OutputKind, str]] = ..., tokenizer: _Optional[_Union[TokenizerRef, _Mapping]] = ..., parameter_count: _Optional[int] = ..., training: _Optional[_Union[TrainingSummary, _Mapping]] = ..., export: _Optional[_Union[ExportSummary, _Mapping]] = ..., serving: _Optional[_Union[ServingOptions, _Mapping]] = ..., sequence: _Optional[_Union[SequenceInput, _Mapping]] = ...) -> None: ...
