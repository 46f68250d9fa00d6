"""The JSON Schemas of KServe V2 REST bodies (serving.handlers.v2_rest's operations).

Where KServe's published V2 document (docs/predict-api/v2/rest_predict_v2.yaml in kserve/kserve)
has the same body, the schema keeps its name, its properties' types and its required fields, so a
client generated from either document reads and writes the same JSON; answers may require more than
KServe's (fields this server always sends). Triton's extensions (model configuration, statistics, the
repository) follow Triton's JSON, as serving.protocol.v2_dataplane writes it.
"""

from __future__ import annotations

from serving.handlers.operations import Component, Schema
from serving.protocol.v2_types import BINARY_DATA, BINARY_DATA_OUTPUT, BINARY_DATA_SIZE, HEADER_LENGTH

STRING = {"type": "string"}
INTEGER = {"type": "integer"}
STRINGS = {"type": "array", "items": STRING}
SHAPE = {"type": "array", "items": INTEGER}


def _object(properties: Schema, required: list[str], description: str = "") -> Schema:
    schema: Schema = {"type": "object", "properties": properties, "required": required}
    if description:
        schema["description"] = description
    return schema


PARAMETERS = Component(
    "parameters",
    {
        "type": "object",
        "description": (
            f"Named values. Requests: `{BINARY_DATA_OUTPUT}` (boolean: every output as binary data), "
            f"`timeout` (integer microseconds: the deadline); inputs: `{BINARY_DATA_SIZE}` (integer: the "
            f"input's bytes in the binary data); outputs: `{BINARY_DATA}` (boolean)."
        ),
    },
)
TENSOR_DATA = Component(
    "tensor_data",
    {
        "type": "array",
        "description": (
            "A tensor's elements, flattened in row-major order: here the texts of `text`, and the outputs. "
            "(KServe's document also allows nested lists, which no tensor here takes.)"
        ),
        "items": {"anyOf": [{"type": "number"}, STRING, {"type": "boolean"}]},
    },
)
METADATA_SERVER_RESPONSE = Component(
    "metadata_server_response",
    _object({"name": STRING, "version": STRING, "extensions": STRINGS}, ["name", "version", "extensions"]),
)
METADATA_TENSOR = Component(
    "metadata_tensor",
    _object({"name": STRING, "datatype": STRING, "shape": SHAPE}, ["name", "datatype", "shape"]),
)
METADATA_MODEL_RESPONSE = Component(
    "metadata_model_response",
    _object(
        {
            "name": STRING,
            "versions": STRINGS,
            "platform": STRING,
            "inputs": {"type": "array", "items": METADATA_TENSOR},
            "outputs": {"type": "array", "items": METADATA_TENSOR},
        },
        ["name", "versions", "platform", "inputs", "outputs"],
        "Every model takes the BYTES input `text` [N] (UTF-8 texts) and answers FP32 `probabilities` "
        "[N, labels] and BYTES `label` [N].",
    ),
)
# A tensor in a request or a response.
_TENSOR = {"name": STRING, "shape": SHAPE, "datatype": STRING, "parameters": PARAMETERS, "data": TENSOR_DATA}
REQUEST_INPUT = Component(
    "request_input",
    _object(
        _TENSOR,
        ["name", "shape", "datatype", "data"],
        'Here one BYTES tensor "text" of shape [N], its data N strings.',
    ),
)
REQUEST_OUTPUT = Component("request_output", _object({"name": STRING, "parameters": PARAMETERS}, ["name"]))
INFERENCE_REQUEST = Component(
    "inference_request",
    _object(
        {
            "id": STRING,
            "parameters": PARAMETERS,
            "inputs": {"type": "array", "items": REQUEST_INPUT},
            "outputs": {"type": "array", "items": REQUEST_OUTPUT},
        },
        ["inputs"],
        "Without `outputs`, every output is returned.",
    ),
)
RESPONSE_OUTPUT = Component("response_output", _object(_TENSOR, ["name", "shape", "datatype", "data"]))
INFERENCE_RESPONSE = Component(
    "inference_response",
    _object(
        {
            "model_name": STRING,
            "model_version": STRING,
            "id": STRING,
            "parameters": PARAMETERS,
            "outputs": {"type": "array", "items": RESPONSE_OUTPUT},
        },
        ["model_name", "model_version", "outputs"],
    ),
)
BINARY_BODY = {
    "type": "string",
    "format": "binary",
    "description": (
        f"The binary tensor data extension: the JSON document first (its byte length in the header "
        f"{HEADER_LENGTH}), then the binary data of each tensor whose parameters name its "
        f"`{BINARY_DATA_SIZE}`, in order; a BYTES tensor's elements each a 4-byte little-endian length "
        "and that many bytes."
    ),
}
BINARY_MEDIA_TYPE = "application/octet-stream"
HEADER_LENGTH_PARAMETER_SCHEMA = {"type": "integer", "minimum": 0}

LIVE = Component("server_live_response", _object({"live": {"type": "boolean"}}, ["live"]))
READY = Component("server_ready_response", _object({"ready": {"type": "boolean"}}, ["ready"]))
MODEL_READY = Component(
    "model_ready_response", _object({"name": STRING, "ready": {"const": True}}, ["name", "ready"])
)

_CONFIG_TENSOR = _object(
    {
        "name": STRING,
        "data_type": STRING,
        "dims": SHAPE,
        "reshape": _object({"shape": SHAPE}, ["shape"]),
    },
    ["name", "data_type", "dims"],
)
MODEL_CONFIG = Component(
    "model_config",
    _object(
        {
            "name": STRING,
            "platform": STRING,
            "backend": STRING,
            "version_policy": {
                "oneOf": [
                    _object({"all": {"type": "object"}}, ["all"]),
                    _object({"latest": _object({"num_versions": INTEGER}, ["num_versions"])}, ["latest"]),
                ]
            },
            "max_batch_size": INTEGER,
            "input": {"type": "array", "items": _CONFIG_TENSOR},
            "output": {"type": "array", "items": _CONFIG_TENSOR},
            "dynamic_batching": _object(
                {
                    "max_queue_delay_microseconds": INTEGER,
                    "default_queue_policy": _object({"max_queue_size": INTEGER}, ["max_queue_size"]),
                },
                ["max_queue_delay_microseconds", "default_queue_policy"],
            ),
            "instance_group": {
                "type": "array",
                "items": _object(
                    {"name": STRING, "count": INTEGER, "kind": STRING}, ["name", "count", "kind"]
                ),
            },
            "parameters": {
                "type": "object",
                "additionalProperties": _object({"string_value": STRING}, ["string_value"]),
            },
        },
        [
            "name",
            "platform",
            "backend",
            "version_policy",
            "max_batch_size",
            "input",
            "output",
            "dynamic_batching",
            "instance_group",
            "parameters",
        ],
        "Triton's model configuration (ModelConfig in JSON); tensors are per text, the batch dimension "
        "implied by max_batch_size.",
    ),
)
_DURATION = Component(
    "statistic_duration",
    _object({"count": INTEGER, "ns": INTEGER}, ["count", "ns"], "How many, and their total nanoseconds."),
)
_COMPUTE = {"compute_input": _DURATION, "compute_infer": _DURATION, "compute_output": _DURATION}
MODEL_STATISTICS_RESPONSE = Component(
    "model_statistics_response",
    _object(
        {
            "model_stats": {
                "type": "array",
                "items": _object(
                    {
                        "name": STRING,
                        "version": STRING,
                        "last_inference": INTEGER,
                        "inference_count": INTEGER,
                        "execution_count": INTEGER,
                        "inference_stats": _object(
                            {"success": _DURATION, "fail": _DURATION, "queue": _DURATION, **_COMPUTE},
                            ["success", "fail", "queue", *_COMPUTE],
                        ),
                        "batch_stats": {
                            "type": "array",
                            "items": _object({"batch_size": INTEGER, **_COMPUTE}, ["batch_size", *_COMPUTE]),
                        },
                    },
                    [
                        "name",
                        "version",
                        "last_inference",
                        "inference_count",
                        "execution_count",
                        "inference_stats",
                        "batch_stats",
                    ],
                ),
            }
        },
        ["model_stats"],
        "Triton's statistics extension, one entry per model version.",
    ),
)
REPOSITORY_INDEX_REQUEST = Component(
    "repository_index_request",
    {
        "type": "object",
        "properties": {"ready": {"type": "boolean", "description": "Only the loaded versions."}},
    },
)
REPOSITORY_INDEX_RESPONSE = Component(
    "repository_index_response",
    {
        "type": "array",
        "items": _object(
            {
                "name": STRING,
                "version": STRING,
                "state": {"enum": ["READY", "UNAVAILABLE"]},
                "reason": STRING,
            },
            ["name", "state"],
        ),
        "description": (
            "One READY entry per loaded version, one UNAVAILABLE entry with its reason per version that "
            'failed to load, and for a model with neither one UNAVAILABLE entry, reason "unloaded".'
        ),
    },
)
REPOSITORY_MODEL_REQUEST = Component(
    "repository_model_request", {"type": "object", "properties": {"parameters": PARAMETERS}}
)
EMPTY = {"type": "object", "maxProperties": 0}
