from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ClassifyRequest(_message.Message):
    __slots__ = ("model", "version", "texts")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    TEXTS_FIELD_NUMBER: _ClassVar[int]
    model: str
    version: int
    texts: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, model: _Optional[str] = ..., version: _Optional[int] = ..., texts: _Optional[_Iterable[str]] = ...) -> None: ...

class LabelScore(_message.Message):
    __slots__ = ("label", "score")
    LABEL_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    label: str
    score: float
    def __init__(self, label: _Optional[str] = ..., score: _Optional[float] = ...) -> None: ...

class Prediction(_message.Message):
    __slots__ = ("label", "score", "scores")
    LABEL_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    SCORES_FIELD_NUMBER: _ClassVar[int]
    label: str
    score: float
    scores: _containers.RepeatedCompositeFieldContainer[LabelScore]
    def __init__(self, label: _Optional[str] = ..., score: _Optional[float] = ..., scores: _Optional[_Iterable[_Union[LabelScore, _Mapping]]] = ...) -> None: ...

class ClassifyResponse(_message.Message):
    __slots__ = ("model", "version", "predictions")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    PREDICTIONS_FIELD_NUMBER: _ClassVar[int]
    model: str
    version: int
    predictions: _containers.RepeatedCompositeFieldContainer[Prediction]
    def __init__(self, model: _Optional[str] = ..., version: _Optional[int] = ..., predictions: _Optional[_Iterable[_Union[Prediction, _Mapping]]] = ...) -> None: ...

class CompareRequest(_message.Message):
    __slots__ = ("texts", "models", "rounds")
    TEXTS_FIELD_NUMBER: _ClassVar[int]
    MODELS_FIELD_NUMBER: _ClassVar[int]
    ROUNDS_FIELD_NUMBER: _ClassVar[int]
    texts: _containers.RepeatedScalarFieldContainer[str]
    models: _containers.RepeatedScalarFieldContainer[str]
    rounds: int
    def __init__(self, texts: _Optional[_Iterable[str]] = ..., models: _Optional[_Iterable[str]] = ..., rounds: _Optional[int] = ...) -> None: ...

class ModelPredictions(_message.Message):
    __slots__ = ("model", "version", "runtime", "predictions", "server_latency_seconds", "queue_wait_seconds", "compute_seconds_per_text")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    RUNTIME_FIELD_NUMBER: _ClassVar[int]
    PREDICTIONS_FIELD_NUMBER: _ClassVar[int]
    SERVER_LATENCY_SECONDS_FIELD_NUMBER: _ClassVar[int]
    QUEUE_WAIT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    COMPUTE_SECONDS_PER_TEXT_FIELD_NUMBER: _ClassVar[int]
    model: str
    version: int
    runtime: str
    predictions: _containers.RepeatedCompositeFieldContainer[Prediction]
    server_latency_seconds: float
    queue_wait_seconds: float
    compute_seconds_per_text: float
    def __init__(self, model: _Optional[str] = ..., version: _Optional[int] = ..., runtime: _Optional[str] = ..., predictions: _Optional[_Iterable[_Union[Prediction, _Mapping]]] = ..., server_latency_seconds: _Optional[float] = ..., queue_wait_seconds: _Optional[float] = ..., compute_seconds_per_text: _Optional[float] = ...) -> None: ...

class CompareResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[ModelPredictions]
    def __init__(self, results: _Optional[_Iterable[_Union[ModelPredictions, _Mapping]]] = ...) -> None: ...

class ExplainRequest(_message.Message):
    __slots__ = ("text", "models", "version")
    TEXT_FIELD_NUMBER: _ClassVar[int]
    MODELS_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    text: str
    models: _containers.RepeatedScalarFieldContainer[str]
    version: int
    def __init__(self, text: _Optional[str] = ..., models: _Optional[_Iterable[str]] = ..., version: _Optional[int] = ...) -> None: ...

class WordAttribution(_message.Message):
    __slots__ = ("start", "end", "word", "attribution", "oov", "seen")
    START_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    WORD_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTION_FIELD_NUMBER: _ClassVar[int]
    OOV_FIELD_NUMBER: _ClassVar[int]
    SEEN_FIELD_NUMBER: _ClassVar[int]
    start: int
    end: int
    word: str
    attribution: float
    oov: bool
    seen: bool
    def __init__(self, start: _Optional[int] = ..., end: _Optional[int] = ..., word: _Optional[str] = ..., attribution: _Optional[float] = ..., oov: _Optional[bool] = ..., seen: _Optional[bool] = ...) -> None: ...

class ModelExplanation(_message.Message):
    __slots__ = ("model", "version", "runtime", "label", "probability", "words", "variants", "server_latency_seconds")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    RUNTIME_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    PROBABILITY_FIELD_NUMBER: _ClassVar[int]
    WORDS_FIELD_NUMBER: _ClassVar[int]
    VARIANTS_FIELD_NUMBER: _ClassVar[int]
    SERVER_LATENCY_SECONDS_FIELD_NUMBER: _ClassVar[int]
    model: str
    version: int
    runtime: str
    label: str
    probability: float
    words: _containers.RepeatedCompositeFieldContainer[WordAttribution]
    variants: int
    server_latency_seconds: float
    def __init__(self, model: _Optional[str] = ..., version: _Optional[int] = ..., runtime: _Optional[str] = ..., label: _Optional[str] = ..., probability: _Optional[float] = ..., words: _Optional[_Iterable[_Union[WordAttribution, _Mapping]]] = ..., variants: _Optional[int] = ..., server_latency_seconds: _Optional[float] = ...) -> None: ...

class ExplainResponse(_message.Message):
    __slots__ = ("explanations",)
    EXPLANATIONS_FIELD_NUMBER: _ClassVar[int]
    explanations: _containers.RepeatedCompositeFieldContainer[ModelExplanation]
    def __init__(self, explanations: _Optional[_Iterable[_Union[ModelExplanation, _Mapping]]] = ...) -> None: ...

class ListModelsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListModelsResponse(_message.Message):
    __slots__ = ("models",)
    MODELS_FIELD_NUMBER: _ClassVar[int]
    models: _containers.RepeatedCompositeFieldContainer[ModelInfo]
    def __init__(self, models: _Optional[_Iterable[_Union[ModelInfo, _Mapping]]] = ...) -> None: ...

class GetModelRequest(_message.Message):
    __slots__ = ("model",)
    MODEL_FIELD_NUMBER: _ClassVar[int]
    model: str
    def __init__(self, model: _Optional[str] = ...) -> None: ...

class VersionInfo(_message.Message):
    __slots__ = ("version", "runtime", "ready", "parameter_count", "validation_accuracy", "validation_loss", "mean_epoch_seconds", "test_accuracy")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    RUNTIME_FIELD_NUMBER: _ClassVar[int]
    READY_FIELD_NUMBER: _ClassVar[int]
    PARAMETER_COUNT_FIELD_NUMBER: _ClassVar[int]
    VALIDATION_ACCURACY_FIELD_NUMBER: _ClassVar[int]
    VALIDATION_LOSS_FIELD_NUMBER: _ClassVar[int]
    MEAN_EPOCH_SECONDS_FIELD_NUMBER: _ClassVar[int]
    TEST_ACCURACY_FIELD_NUMBER: _ClassVar[int]
    version: int
    runtime: str
    ready: bool
    parameter_count: int
    validation_accuracy: float
    validation_loss: float
    mean_epoch_seconds: float
    test_accuracy: float
    def __init__(self, version: _Optional[int] = ..., runtime: _Optional[str] = ..., ready: _Optional[bool] = ..., parameter_count: _Optional[int] = ..., validation_accuracy: _Optional[float] = ..., validation_loss: _Optional[float] = ..., mean_epoch_seconds: _Optional[float] = ..., test_accuracy: _Optional[float] = ...) -> None: ...

class ModelInfo(_message.Message):
    __slots__ = ("name", "architecture", "dataset", "labels", "max_length", "versions")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ARCHITECTURE_FIELD_NUMBER: _ClassVar[int]
    DATASET_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    MAX_LENGTH_FIELD_NUMBER: _ClassVar[int]
    VERSIONS_FIELD_NUMBER: _ClassVar[int]
    name: str
    architecture: str
    dataset: str
    labels: _containers.RepeatedScalarFieldContainer[str]
    max_length: int
    versions: _containers.RepeatedCompositeFieldContainer[VersionInfo]
    def __init__(self, name: _Optional[str] = ..., architecture: _Optional[str] = ..., dataset: _Optional[str] = ..., labels: _Optional[_Iterable[str]] = ..., max_length: _Optional[int] = ..., versions: _Optional[_Iterable[_Union[VersionInfo, _Mapping]]] = ...) -> None: ...
