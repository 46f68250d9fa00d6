"""JSON Schemas of protobuf messages as the protobuf JSON mapping writes and reads them, for the OpenAPI
document (serving.handlers.openapi): the REST routes whose bodies are messages (compare, explain, TF
Serving's status and metadata) are described from the messages' own descriptors, so the document
follows the .proto files.

The mapping (google.protobuf.json_format): 64-bit integers are decimal strings when written (numbers
are read too), floats may be "NaN" or "Infinity", enums are names (numbers are read too), bytes are
base64, maps are objects, the wrapper types are their value. Field names are the JSON names (or, with
`proto_names`, the .proto names); a message read from JSON accepts both, and no other. A field is
required in an answer only when it is written whatever its value (`all_fields`: json_format's
always_print_fields_with_no_presence) and has no presence.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from google.protobuf.descriptor import Descriptor, FieldDescriptor

Schema = dict[str, Any]
# the components of the document: message full name -> its schema
Components = dict[str, Schema]

_INT64 = {"type": "string", "pattern": "^-?[0-9]+$"}
_INT64_READ = {"oneOf": [{"type": "integer"}, _INT64]}
_FLOAT = {"oneOf": [{"type": "number"}, {"enum": ["NaN", "Infinity", "-Infinity"]}]}
_T = FieldDescriptor
_SCALARS: dict[int, Schema] = {
    _T.TYPE_DOUBLE: _FLOAT,
    _T.TYPE_FLOAT: _FLOAT,
    _T.TYPE_INT32: {"type": "integer", "minimum": -(2**31), "maximum": 2**31 - 1},
    _T.TYPE_SINT32: {"type": "integer", "minimum": -(2**31), "maximum": 2**31 - 1},
    _T.TYPE_SFIXED32: {"type": "integer", "minimum": -(2**31), "maximum": 2**31 - 1},
    _T.TYPE_UINT32: {"type": "integer", "minimum": 0, "maximum": 2**32 - 1},
    _T.TYPE_FIXED32: {"type": "integer", "minimum": 0, "maximum": 2**32 - 1},
    _T.TYPE_INT64: _INT64,
    _T.TYPE_SINT64: _INT64,
    _T.TYPE_SFIXED64: _INT64,
    _T.TYPE_UINT64: _INT64,
    _T.TYPE_FIXED64: _INT64,
    _T.TYPE_BOOL: {"type": "boolean"},
    _T.TYPE_STRING: {"type": "string"},
    _T.TYPE_BYTES: {"type": "string", "contentEncoding": "base64"},
}
_WRAPPERS = {
    "google.protobuf.DoubleValue": _T.TYPE_DOUBLE,
    "google.protobuf.FloatValue": _T.TYPE_FLOAT,
    "google.protobuf.Int64Value": _T.TYPE_INT64,
    "google.protobuf.UInt64Value": _T.TYPE_UINT64,
    "google.protobuf.Int32Value": _T.TYPE_INT32,
    "google.protobuf.UInt32Value": _T.TYPE_UINT32,
    "google.protobuf.BoolValue": _T.TYPE_BOOL,
    "google.protobuf.StringValue": _T.TYPE_STRING,
    "google.protobuf.BytesValue": _T.TYPE_BYTES,
}


@dataclass(frozen=True)
class JsonMapping:
    """How messages are written: `reading` (a request body), `proto_names` (the .proto field names, as
    TF Serving's REST API writes them), `all_fields` (fields without presence written even when
    zero)."""

    reading: bool = False
    proto_names: bool = False
    all_fields: bool = False

    @property
    def suffix(self) -> str:
        """Tells the components of each mapping apart."""
        flags = {"read": self.reading, "proto_names": self.proto_names, "all_fields": self.all_fields}
        return "".join(f".{flag}" for flag, on in flags.items() if on)


@dataclass
class _Builder:
    mapping: JsonMapping
    reference: Callable[[str], str]
    components: Components = field(default_factory=dict)

    def message(self, descriptor: Descriptor) -> Schema:
        """A reference to the message's schema, added to the components with every message it holds."""
        if descriptor.full_name in _WRAPPERS:
            return self._scalar(_WRAPPERS[descriptor.full_name])
        name = descriptor.full_name + self.mapping.suffix
        if name not in self.components:
            self.components[name] = {}  # placed first: a message may hold itself
            self.components[name] = self._object(descriptor)
        return {"$ref": self.reference(name)}

    def _object(self, descriptor: Descriptor) -> Schema:
        properties: Schema = {}
        required = []
        for item in descriptor.fields:
            schema = self._field(item)
            names = {item.name if self.mapping.proto_names else item.json_name}
            if self.mapping.reading:
                names |= {item.name, item.json_name}
            for name in sorted(names):
                properties[name] = schema
            if self.mapping.all_fields and not self.mapping.reading and not item.has_presence:
                required.extend(sorted(names))
        schema: Schema = {"type": "object", "properties": properties, "additionalProperties": False}
        if required:
            schema["required"] = required
        return schema

    def _field(self, item: FieldDescriptor) -> Schema:
        if item.message_type is not None and item.message_type.GetOptions().map_entry:
            key, value = item.message_type.fields_by_name["key"], item.message_type.fields_by_name["value"]
            keys = (
                {"pattern": "^-?[0-9]+$"} if key.type != _T.TYPE_STRING and key.type != _T.TYPE_BOOL else {}
            )
            return {"type": "object", "propertyNames": keys, "additionalProperties": self._single(value)}
        if item.is_repeated:
            return {"type": "array", "items": self._single(item)}
        return self._single(item)

    def _single(self, item: FieldDescriptor) -> Schema:
        if item.message_type is not None:
            return self.message(item.message_type)
        if item.enum_type is not None:
            names: Schema = {"type": "string", "enum": [value.name for value in item.enum_type.values]}
            return {"oneOf": [names, {"type": "integer"}]} if self.mapping.reading else names
        return self._scalar(item.type)

    def _scalar(self, kind: int) -> Schema:
        if self.mapping.reading and _SCALARS[kind] is _INT64:
            return _INT64_READ
        return _SCALARS[kind]


def message_schema(
    descriptor: Descriptor, mapping: JsonMapping, components: Components, reference: Callable[[str], str]
) -> Schema:
    """A reference to `descriptor`'s schema under `mapping`; the schemas it needs go into `components`
    (named by message full name and mapping), each referred to as `reference(name)`."""
    builder = _Builder(mapping, reference, components)
    return builder.message(descriptor)
