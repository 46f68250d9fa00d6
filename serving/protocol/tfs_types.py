"""TensorFlow Serving's API semantics (tensorflow.serving.PredictionService and ModelService, and their
REST binding under /v1/models), shared by the gRPC and REST adapters so that the two cannot drift apart.

Every model serves two signatures, which GetModelMetadata describes:
- `serving_default` (Predict, method tensorflow/serving/predict): input `text`, DT_STRING [-1], UTF-8
  texts; outputs `probabilities`, DT_FLOAT [-1, labels] (one per label, in config order), and `label`,
  DT_STRING [-1] (the most probable label). `output_filter` picks outputs; none means both.
- `classification` (Classify, method tensorflow/serving/classify): input `inputs`, DT_STRING [-1],
  tf.Examples, each with the bytes feature `text` holding one text; outputs `classes`, DT_STRING
  [-1, labels], and `scores`, DT_FLOAT [-1, labels]. Classify's empty signature_name means this one.

Which version answers (ModelSpec, or the REST path's /versions/<v> and /labels/<l>): `version` names a
loaded version, `version_label` a label of `--version-labels` (serving.settings), neither the newest
loaded version. As in TF Serving, an unknown model or version is NOT_FOUND (REST 404) and an unknown
label INVALID_ARGUMENT (400). A wrong dtype or shape, a missing or unknown input, a count that differs
from the shape, a ragged REST list: INVALID_ARGUMENT naming the field.

Decoding is strict: a string tensor holds exactly as many `string_val`s as its shape declares (TF's
"repeat the last value" shorthand is refused, as a silently repeated text would be).
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
import numpy as np
from google.protobuf import json_format

from seqserve.tfs.tensorflow.core.example import example_pb2
from seqserve.tfs.tensorflow.core.framework import tensor_pb2, types_pb2
from seqserve.tfs.tensorflow.core.protobuf import meta_graph_pb2
from seqserve.tfs.tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_pb2,
    predict_pb2,
)
from seqserve.tfs.xla.tsl.protobuf import error_codes_pb2
from serving.errors import ServingError, invalid
from serving.inference import Classification
from serving.model import ServedModel
from serving.registry import ModelRegistry, Transition
from serving.settings import Settings
from serving.versions import MAX_DIGITS, parse_number

PREDICT_SIGNATURE = "serving_default"
CLASSIFY_SIGNATURE = "classification"
TEXT_INPUT = "text"
PROBABILITIES_OUTPUT = "probabilities"
LABEL_OUTPUT = "label"
OUTPUT_NAMES = (PROBABILITIES_OUTPUT, LABEL_OUTPUT)
EXAMPLES_INPUT = "inputs"
TEXT_FEATURE = "text"
SIGNATURE_DEF_FIELD = "signature_def"
_TEXT_FIELD = f"inputs[{TEXT_INPUT!r}]"
_STATE = get_model_status_pb2.ModelVersionStatus.State

CheckCount = Callable[[int], None]


def not_found(message: str) -> ServingError:
    return ServingError(grpc.StatusCode.NOT_FOUND, message)


def _dtype_name(dtype: int) -> str:
    return types_pb2.DataType.Name(dtype) if dtype in types_pb2.DataType.values() else str(dtype)


def _utf8(element: bytes, where: str) -> str:
    try:
        return element.decode("utf-8")
    except UnicodeDecodeError as error:
        raise invalid(f"{where} is not valid UTF-8 ({error.reason} at byte {error.start})") from None


class VersionLabels:
    """--version-labels: model -> {label: version}."""

    def __init__(self, settings: Settings) -> None:
        self._labels: dict[str, dict[str, int]] = {}
        for model, label, version in settings.version_labels:
            self._labels.setdefault(model, {})[label] = version

    def version(self, name: str, label: str) -> int:
        labels = self._labels.get(name, {})
        if label not in labels:
            known = ", ".join(sorted(labels)) or "none (--version-labels)"
            raise invalid(f"Unrecognized servable version label: {label!r}; model {name!r} has: {known}")
        return labels[label]


@dataclass(frozen=True)
class ModelSelection:
    """Which model and version a request asks for: a version, a label, or neither (the newest)."""

    name: str
    version: int | None = None
    label: str | None = None

    @classmethod
    def from_grpc(cls, spec: model_pb2.ModelSpec) -> ModelSelection:
        choice = spec.WhichOneof("version_choice")
        return cls(
            spec.name,
            spec.version.value if choice == "version" else None,
            spec.version_label if choice == "version_label" else None,
        )

    @classmethod
    def from_rest(cls, name: str, version: str | None, label: str | None) -> ModelSelection:
        if version is None:
            return cls(name, None, label)
        number = parse_number(version)
        if number is None:
            raise invalid(
                f"version {version[:32]!r} in the path is not a positive integer of at most {MAX_DIGITS} "
                "ASCII digits"
            )
        return cls(name, number, label)

    def version_number(self, labels: VersionLabels) -> int:
        """The version to look up: 0 for the newest, as InferenceService.lookup takes it."""
        if self.label is not None:
            return labels.version(self.name, self.label)
        if self.version is None:
            return 0
        if self.version <= 0:
            raise not_found(f"model {self.name!r} has no version {self.version}; versions are positive")
        return self.version


def model_spec(model: ServedModel, signature_name: str) -> model_pb2.ModelSpec:
    """The ModelSpec of a response: the version that answered, whatever the request named."""
    spec = model_pb2.ModelSpec(name=model.name, signature_name=signature_name)
    spec.version.value = model.version
    return spec


def _check_signature(signature_name: str, expected: str, method: str) -> None:
    if signature_name not in ("", expected):
        raise invalid(
            f"{method} serves signature {expected!r} (or an empty signature_name), "
            f"not {signature_name[:64]!r}"
        )


def _check_outputs(names: Sequence[str]) -> list[str]:
    chosen: list[str] = []
    for name in names:
        if name not in OUTPUT_NAMES:
            raise invalid(
                f"output_filter names {name[:64]!r}; signature {PREDICT_SIGNATURE!r} has outputs "
                f"{PROBABILITIES_OUTPUT!r} (DT_FLOAT [-1, labels]) and {LABEL_OUTPUT!r} (DT_STRING [-1])"
            )
        if name in chosen:
            raise invalid(f"output_filter names {name!r} twice")
        chosen.append(name)
    return chosen or list(OUTPUT_NAMES)


def texts_from_tensor(tensor: tensor_pb2.TensorProto, where: str, check_count: CheckCount) -> list[str]:
    """A DT_STRING [N] TensorProto of UTF-8 texts; `check_count` sees N before anything is decoded."""
    if tensor.dtype != types_pb2.DT_STRING:
        raise invalid(f"{where} has dtype {_dtype_name(tensor.dtype)}; expected DT_STRING (UTF-8 texts)")
    dims = [dim.size for dim in tensor.tensor_shape.dim]
    if tensor.tensor_shape.unknown_rank or len(dims) != 1 or dims[0] < 0:
        shown = "unknown rank" if tensor.tensor_shape.unknown_rank else str(dims)
        raise invalid(f"{where} has shape {shown}; expected [N], one text per element")
    if tensor.tensor_content:
        raise invalid(f"{where}: DT_STRING values go in string_val, not tensor_content")
    check_count(dims[0])
    if len(tensor.string_val) != dims[0]:
        raise invalid(f"{where} has {len(tensor.string_val)} string_val; its shape declares {dims[0]}")
    return [_utf8(value, f"{where} element {index}") for index, value in enumerate(tensor.string_val)]


def _json_text(value: Any, where: str) -> str:
    """A JSON string, or TF Serving's {"b64": "..."} form of binary strings (here: UTF-8 bytes)."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and set(value) == {"b64"} and isinstance(value["b64"], str):
        try:
            data = base64.b64decode(value["b64"], validate=True)
        except ValueError as error:  # binascii.Error, or characters beyond ASCII
            raise invalid(f"{where}: 'b64' is not base64 ({error})") from None
        return _utf8(data, where)
    if isinstance(value, list):
        raise invalid(
            f"{where} is a list; input {TEXT_INPUT!r} (DT_STRING [-1]) takes one string per instance, "
            "so the list is ragged or one level too deep"
        )
    raise invalid(f"{where} is a JSON {type(value).__name__}; input {TEXT_INPUT!r} takes strings")


def _json_texts(values: Any, where: str, check_count: CheckCount) -> list[str]:
    if not isinstance(values, list):
        raise invalid(f"{where} must be a JSON list of strings (input {TEXT_INPUT!r} has shape [-1])")
    check_count(len(values))
    return [_json_text(value, f"{where}[{index}]") for index, value in enumerate(values)]


def _row_text(instance: Any, where: str) -> str:
    """One row-format instance: the text itself, or an object {"text": ...} naming the input."""
    if isinstance(instance, dict) and set(instance) != {"b64"}:
        unknown = sorted(set(instance) - {TEXT_INPUT})
        if unknown:
            raise invalid(f"{where} names inputs {unknown}; the signature's only input is {TEXT_INPUT!r}")
        if TEXT_INPUT not in instance:
            raise invalid(f"{where} has no input {TEXT_INPUT!r}")
        return _json_text(instance[TEXT_INPUT], f"{where}[{TEXT_INPUT!r}]")
    return _json_text(instance, where)


def _signature_name(document: Mapping[str, Any]) -> str:
    name = document.get("signature_name", "")
    if not isinstance(name, str):
        raise invalid("'signature_name' must be a JSON string")
    return name


@dataclass(frozen=True)
class PredictCall:
    """A Predict request, whichever wire format it came in: the texts and the outputs to return."""

    texts: list[str]
    outputs: list[str]
    row_format: bool = False  # REST: answer "predictions" (rows) rather than "outputs" (columns)

    @classmethod
    def from_grpc(cls, request: predict_pb2.PredictRequest, check_count: CheckCount) -> PredictCall:
        _check_signature(request.model_spec.signature_name, PREDICT_SIGNATURE, "Predict")
        inputs = request.inputs
        if TEXT_INPUT not in inputs:
            raise invalid(
                f"missing input {TEXT_INPUT!r} (got {sorted(inputs)}): send inputs[{TEXT_INPUT!r}], a "
                "DT_STRING tensor of shape [N] holding UTF-8 texts"
            )
        if len(inputs) != 1:
            raise invalid(
                f"inputs {sorted(inputs)}: signature {PREDICT_SIGNATURE!r} takes {TEXT_INPUT!r} alone"
            )
        texts = texts_from_tensor(inputs[TEXT_INPUT], _TEXT_FIELD, check_count)
        return cls(texts, _check_outputs(request.output_filter))

    @classmethod
    def from_rest(cls, document: Mapping[str, Any], check_count: CheckCount) -> PredictCall:
        _check_signature(_signature_name(document), PREDICT_SIGNATURE, "Predict")
        if ("instances" in document) == ("inputs" in document):
            raise invalid(
                "send either 'instances' (row format, a list of texts) or 'inputs' (columnar format), "
                "exactly one of them"
            )
        if "instances" in document:
            instances = document["instances"]
            if not isinstance(instances, list):
                raise invalid("'instances' must be a JSON list, one instance per text")
            check_count(len(instances))
            texts = [_row_text(instance, f"instances[{index}]") for index, instance in enumerate(instances)]
            return cls(texts, list(OUTPUT_NAMES), row_format=True)
        inputs = document["inputs"]
        if isinstance(inputs, dict) and set(inputs) != {"b64"}:
            unknown = sorted(set(inputs) - {TEXT_INPUT})
            if unknown or TEXT_INPUT not in inputs:
                raise invalid(f"'inputs' names {sorted(inputs)}; the only input is {TEXT_INPUT!r}")
            inputs = inputs[TEXT_INPUT]
            where = f"inputs[{TEXT_INPUT!r}]"
        else:
            where = "'inputs'"
        return cls(_json_texts(inputs, where, check_count), list(OUTPUT_NAMES))

    def _columns(self, result: Classification) -> dict[str, np.ndarray | list[str]]:
        probabilities = np.asarray(result.probabilities, dtype=np.float32)
        columns: dict[str, np.ndarray | list[str]] = {}
        for name in self.outputs:
            if name == PROBABILITIES_OUTPUT:
                columns[name] = probabilities
            else:
                labels = result.model.labels
                columns[name] = [labels[int(i)] for i in np.argmax(probabilities, axis=1)]
        return columns

    def to_grpc(self, result: Classification) -> predict_pb2.PredictResponse:
        response = predict_pb2.PredictResponse(model_spec=model_spec(result.model, PREDICT_SIGNATURE))
        for name, values in self._columns(result).items():
            tensor = response.outputs[name]
            if isinstance(values, np.ndarray):
                tensor.dtype = types_pb2.DT_FLOAT
                tensor.float_val.extend(values.ravel().tolist())
            else:
                tensor.dtype = types_pb2.DT_STRING
                tensor.string_val.extend(value.encode("utf-8") for value in values)
            for size in np.shape(values):
                tensor.tensor_shape.dim.add(size=size)
        return response

    def to_rest(self, result: Classification) -> dict[str, Any]:
        columns = {
            name: values.tolist() if isinstance(values, np.ndarray) else values
            for name, values in self._columns(result).items()
        }
        if self.row_format:
            rows = [dict(zip(columns, row, strict=True)) for row in zip(*columns.values(), strict=True)]
            return {"predictions": rows}
        return {"outputs": columns}


def _example_text(example: example_pb2.Example, context: example_pb2.Example | None, where: str) -> str:
    feature = example.features.feature
    if TEXT_FEATURE not in feature and context is not None:
        feature, where = context.features.feature, "input.example_list_with_context.context"
    if TEXT_FEATURE not in feature:
        raise invalid(f"{where} has no feature {TEXT_FEATURE!r} (a bytes_list holding one UTF-8 text)")
    where = f"{where}.features.feature[{TEXT_FEATURE!r}]"
    kind = feature[TEXT_FEATURE].WhichOneof("kind")
    if kind != "bytes_list":
        raise invalid(f"{where} is a {kind or 'empty feature'}; expected a bytes_list holding one UTF-8 text")
    values = feature[TEXT_FEATURE].bytes_list.value
    if len(values) != 1:
        raise invalid(f"{where} holds {len(values)} values; expected one text")
    return _utf8(values[0], where)


def _rest_feature_text(features: Mapping[str, Any], where: str) -> str:
    value = features[TEXT_FEATURE]
    if isinstance(value, list):
        if len(value) != 1:
            raise invalid(f"{where}[{TEXT_FEATURE!r}] holds {len(value)} values; expected one text")
        value = value[0]
    return _json_text(value, f"{where}[{TEXT_FEATURE!r}]")


@dataclass(frozen=True)
class ClassifyCall:
    """A Classify request: one text per tf.Example (its `text` feature, else the context's)."""

    texts: list[str]

    @classmethod
    def from_grpc(
        cls, request: classification_pb2.ClassificationRequest, check_count: CheckCount
    ) -> ClassifyCall:
        _check_signature(request.model_spec.signature_name, CLASSIFY_SIGNATURE, "Classify")
        kind = request.input.WhichOneof("kind")
        if kind is None:
            raise invalid("input holds no examples: set input.example_list.examples")
        if kind == "example_list":
            examples, context = request.input.example_list.examples, None
        else:
            examples = request.input.example_list_with_context.examples
            context = request.input.example_list_with_context.context
        check_count(len(examples))
        texts = [
            _example_text(example, context, f"input.{kind}.examples[{index}]")
            for index, example in enumerate(examples)
        ]
        return cls(texts)

    @classmethod
    def from_rest(cls, document: Mapping[str, Any], check_count: CheckCount) -> ClassifyCall:
        _check_signature(_signature_name(document), CLASSIFY_SIGNATURE, "Classify")
        examples = document.get("examples")
        if not isinstance(examples, list):
            raise invalid("'examples' must be a JSON list of objects, each with the feature 'text'")
        context = document.get("context", {})
        if not isinstance(context, dict):
            raise invalid("'context' must be a JSON object of features")
        check_count(len(examples))
        texts = []
        for index, example in enumerate(examples):
            where = f"examples[{index}]"
            if not isinstance(example, dict):
                raise invalid(f"{where} must be a JSON object of features")
            if TEXT_FEATURE in example:
                texts.append(_rest_feature_text(example, where))
            elif TEXT_FEATURE in context:
                texts.append(_rest_feature_text(context, "context"))
            else:
                raise invalid(f"{where} has no feature {TEXT_FEATURE!r} (and 'context' has none)")
        return cls(texts)

    @staticmethod
    def _scores(result: Classification) -> list[list[tuple[str, float]]]:
        labels = result.model.labels
        return [
            list(zip(labels, row.tolist(), strict=True))
            for row in np.asarray(result.probabilities, dtype=np.float32)
        ]

    def to_grpc(self, result: Classification) -> classification_pb2.ClassificationResponse:
        response = classification_pb2.ClassificationResponse(
            model_spec=model_spec(result.model, CLASSIFY_SIGNATURE)
        )
        for row in self._scores(result):
            classes = response.result.classifications.add()
            for label, score in row:
                classes.classes.add(label=label, score=score)
        return response

    def to_rest(self, result: Classification) -> dict[str, Any]:
        return {"results": [[[label, score] for label, score in row] for row in self._scores(result)]}


def _tensor_info(name: str, dtype: int, dims: Sequence[int]) -> meta_graph_pb2.TensorInfo:
    info = meta_graph_pb2.TensorInfo(name=f"{name}:0", dtype=dtype)
    for size in dims:
        info.tensor_shape.dim.add(size=size)
    return info


def signature_defs(model: ServedModel) -> get_model_metadata_pb2.SignatureDefMap:
    """What is served: the two signatures of the module docstring, sized to the model's labels."""
    labels = len(model.labels)
    signatures = get_model_metadata_pb2.SignatureDefMap()
    predict = signatures.signature_def[PREDICT_SIGNATURE]
    predict.method_name = "tensorflow/serving/predict"
    predict.inputs[TEXT_INPUT].CopyFrom(_tensor_info(TEXT_INPUT, types_pb2.DT_STRING, [-1]))
    predict.outputs[PROBABILITIES_OUTPUT].CopyFrom(
        _tensor_info(PROBABILITIES_OUTPUT, types_pb2.DT_FLOAT, [-1, labels])
    )
    predict.outputs[LABEL_OUTPUT].CopyFrom(_tensor_info(LABEL_OUTPUT, types_pb2.DT_STRING, [-1]))
    classify = signatures.signature_def[CLASSIFY_SIGNATURE]
    classify.method_name = "tensorflow/serving/classify"
    classify.inputs[EXAMPLES_INPUT].CopyFrom(_tensor_info(EXAMPLES_INPUT, types_pb2.DT_STRING, [-1]))
    classify.outputs["classes"].CopyFrom(_tensor_info("classes", types_pb2.DT_STRING, [-1, labels]))
    classify.outputs["scores"].CopyFrom(_tensor_info("scores", types_pb2.DT_FLOAT, [-1, labels]))
    return signatures


def check_metadata_fields(fields: Sequence[str]) -> None:
    if list(fields) != [SIGNATURE_DEF_FIELD]:
        raise invalid(
            f"metadata_field {list(fields)[:4]}: the one supported field is {SIGNATURE_DEF_FIELD!r}; "
            "ask for it alone"
        )


def metadata_to_grpc(model: ServedModel) -> get_model_metadata_pb2.GetModelMetadataResponse:
    response = get_model_metadata_pb2.GetModelMetadataResponse(model_spec=model_spec(model, ""))
    response.metadata[SIGNATURE_DEF_FIELD].Pack(signature_defs(model))
    return response


def _json(message: Any) -> dict[str, Any]:
    """A message as TF Serving's REST API writes it: proto field names, default values included."""
    return json_format.MessageToDict(
        message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )


def metadata_to_rest(model: ServedModel) -> dict[str, Any]:
    return {
        "model_spec": _json(model_spec(model, "")),
        "metadata": {SIGNATURE_DEF_FIELD: _json(signature_defs(model))},
    }


def model_status(
    registry: ModelRegistry, selection: ModelSelection, labels: VersionLabels
) -> get_model_status_pb2.GetModelStatusResponse:
    """Every version the server knows of: loaded AVAILABLE, loading LOADING, draining UNLOADING, and a
    failed load END with its error; only the selected one when the request names a version or label."""
    name = selection.name
    states: dict[int, tuple[int, str]] = {}
    for version, why in registry.failed_versions(name).items():
        states[version] = (_STATE.END, why)
    entry = registry.snapshot.models.get(name)
    for version in entry.versions if entry is not None else ():
        states[version] = (_STATE.AVAILABLE, "")
    for (model, version), transition in registry.transitions.items():
        if model == name:
            states[version] = (_STATE.LOADING if transition is Transition.LOADING else _STATE.UNLOADING, "")
    if not states:
        raise not_found(f"Could not find any versions of model {name!r}")
    wanted = selection.version_number(labels)
    if wanted:
        if wanted not in states:
            known = ", ".join(str(v) for v in sorted(states))
            raise not_found(f"Could not find version {wanted} of model {name!r}; its versions: {known}")
        states = {wanted: states[wanted]}
    response = get_model_status_pb2.GetModelStatusResponse()
    for version, (state, why) in sorted(states.items()):
        status = response.model_version_status.add(version=version, state=state)
        status.status.SetInParent()  # error_code OK, written out as TF Serving does
        if why:
            status.status.error_code = error_codes_pb2.UNKNOWN  # the load failed
            status.status.error_message = why
    return response


def status_to_rest(response: get_model_status_pb2.GetModelStatusResponse) -> dict[str, Any]:
    return _json(response)
