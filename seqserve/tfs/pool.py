"""The descriptor pool of the generated TensorFlow Serving stubs: private, not protobuf's default pool.

The stubs define `tensorflow/core/framework/tensor.proto` and the other TensorFlow files under their
own names. In the default pool, a process that also imports TensorFlow (the `tf` runtime, training)
or the `tensorflow-serving-api` package would hold each of those files twice: accepted only while both
copies are byte for byte the same, a start-up failure as soon as either side is upgraded. A pool of
their own can never conflict. The well-known types the files import (google/protobuf/any.proto, ...)
are copied in from the default pool, where the protobuf runtime put them.
"""

from __future__ import annotations

from google.protobuf import descriptor, descriptor_pb2, descriptor_pool

POOL = descriptor_pool.DescriptorPool()
_WELL_KNOWN = "google/protobuf/"


def _add_well_known(name: str) -> None:
    try:
        POOL.FindFileByName(name)
    except KeyError:
        POOL.AddSerializedFile(descriptor_pool.Default().FindFileByName(name).serialized_pb)


def add_serialized_file(serialized: bytes) -> descriptor.FileDescriptor:
    """What the generated modules call instead of `descriptor_pool.Default().AddSerializedFile`."""
    for dependency in descriptor_pb2.FileDescriptorProto.FromString(serialized).dependency:
        if dependency.startswith(_WELL_KNOWN):
            _add_well_known(dependency)
    return POOL.AddSerializedFile(serialized)
