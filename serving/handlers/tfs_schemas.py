"""The JSON Schemas of TensorFlow Serving's REST bodies (serving.handlers.tfs_rest's operations), as
serving.protocol.tfs_types reads and writes them: Predict in the row and the columnar format,
Classify, and the model status and metadata messages in TF Serving's JSON (the .proto field names,
every field written)."""

from __future__ import annotations

from seqserve.tfs.tensorflow_serving.apis import get_model_metadata_pb2, get_model_status_pb2, model_pb2
from serving.handlers.operations import Component, ProtoMessage, Schema
from serving.handlers.proto_schema import JsonMapping
from serving.protocol.tfs_types import LABEL_OUTPUT, PROBABILITIES_OUTPUT, SIGNATURE_DEF_FIELD, TEXT_INPUT

_TF_SERVING_JSON = JsonMapping(proto_names=True, all_fields=True)
_NUMBERS = {"type": "array", "items": {"type": "number"}}
SIGNATURE_NAME = {"type": "string", "description": "Empty, or the method's own signature."}

B64_TEXT = Component(
    "tfs_b64_text",
    {
        "type": "object",
        "description": "A text's UTF-8 bytes in base64.",
        "properties": {"b64": {"type": "string", "contentEncoding": "base64"}},
        "required": ["b64"],
        "additionalProperties": False,
    },
)
# A text: a string, or its bytes in base64.
TEXT = {"anyOf": [{"type": "string"}, B64_TEXT]}
_TEXTS = {"type": "array", "items": TEXT}


def _naming_the_input(name: str, description: str, texts: Schema) -> Component:
    schema = {"type": "object", "properties": {TEXT_INPUT: texts}, "required": [TEXT_INPUT]}
    return Component(name, {**schema, "description": description, "additionalProperties": False})


NAMED_TEXT = _naming_the_input("tfs_named_text", "An instance naming the input.", TEXT)
NAMED_TEXTS = _naming_the_input("tfs_named_texts", "The columnar texts naming the input.", _TEXTS)


def _only(name: str, other: str, schema: Schema, description: str) -> Schema:
    """A request with `name` (and not `other`), and an optional signature_name."""
    return {
        "type": "object",
        "description": description,
        "properties": {"signature_name": SIGNATURE_NAME, name: schema},
        "required": [name],
        "not": {"required": [other]},
    }


ROW_REQUEST = Component(
    "tfs_predict_row_request",
    _only(
        "instances",
        "inputs",
        {"type": "array", "items": {"anyOf": [{"type": "string"}, B64_TEXT, NAMED_TEXT]}},
        "The row format: one text, or one object naming the input, per instance.",
    ),
)
COLUMNAR_REQUEST = Component(
    "tfs_predict_columnar_request",
    _only(
        "inputs",
        "instances",
        {"anyOf": [_TEXTS, NAMED_TEXTS]},
        "The columnar format: the texts, or an object naming the input.",
    ),
)
PREDICT_REQUEST = {"oneOf": [ROW_REQUEST, COLUMNAR_REQUEST]}
ROW = Component(
    "tfs_prediction",
    {
        "type": "object",
        "properties": {PROBABILITIES_OUTPUT: _NUMBERS, LABEL_OUTPUT: {"type": "string"}},
        "required": [PROBABILITIES_OUTPUT, LABEL_OUTPUT],
    },
)
COLUMNS = Component(
    "tfs_prediction_columns",
    {
        "type": "object",
        "properties": {
            PROBABILITIES_OUTPUT: {"type": "array", "items": _NUMBERS},
            LABEL_OUTPUT: {"type": "array", "items": {"type": "string"}},
        },
        "required": [PROBABILITIES_OUTPUT, LABEL_OUTPUT],
    },
)
PREDICT_RESPONSE = {
    "oneOf": [
        Component(
            "tfs_predict_row_response",
            {
                "type": "object",
                "description": "The answer to the row format.",
                "properties": {"predictions": {"type": "array", "items": ROW}},
                "required": ["predictions"],
            },
        ),
        Component(
            "tfs_predict_columnar_response",
            {
                "type": "object",
                "description": "The answer to the columnar format.",
                "properties": {"outputs": COLUMNS},
                "required": ["outputs"],
            },
        ),
    ]
}
_FEATURES = {
    "type": "object",
    "description": "Features of a tf.Example: `text` holds one text (alone or in a one-item list).",
    "properties": {
        TEXT_INPUT: {"anyOf": [TEXT, {"type": "array", "items": TEXT, "minItems": 1, "maxItems": 1}]}
    },
}
CLASSIFY_REQUEST = Component(
    "tfs_classify_request",
    {
        "type": "object",
        "properties": {
            "signature_name": SIGNATURE_NAME,
            "examples": {"type": "array", "items": _FEATURES},
            "context": _FEATURES,
        },
        "required": ["examples"],
        "description": "An example without the feature `text` takes the context's.",
    },
)
CLASSIFY_RESPONSE = Component(
    "tfs_classify_response",
    {
        "type": "object",
        "properties": {
            "results": {
                "type": "array",
                "description": "Per example, every label with its score, in the model's label order.",
                "items": {
                    "type": "array",
                    "items": {
                        # prefixItems would say which is which, but schemathesis 4.32 cannot read it
                        "type": "array",
                        "description": "[label, score]",
                        "items": {"type": ["string", "number"]},
                        "minItems": 2,
                        "maxItems": 2,
                    },
                },
            }
        },
        "required": ["results"],
    },
)
STATUS_RESPONSE = ProtoMessage(get_model_status_pb2.GetModelStatusResponse.DESCRIPTOR, _TF_SERVING_JSON)
METADATA_RESPONSE = Component(
    "tfs_metadata_response",
    {
        "type": "object",
        "properties": {
            "model_spec": ProtoMessage(model_pb2.ModelSpec.DESCRIPTOR, _TF_SERVING_JSON),
            "metadata": {
                "type": "object",
                "properties": {
                    SIGNATURE_DEF_FIELD: ProtoMessage(
                        get_model_metadata_pb2.SignatureDefMap.DESCRIPTOR, _TF_SERVING_JSON
                    )
                },
                "required": [SIGNATURE_DEF_FIELD],
            },
        },
        "required": ["model_spec", "metadata"],
    },
)
