"""seqserve's inference server: model repository, runtimes, dynamic batching, gRPC handlers, metrics.

Layers, each knowing as little as it can:
  handlers/   protocols (seqserve.v1.Classifier; later KServe V2), nothing about model files
  inference   protocol-neutral request path: model lookup, limits, request metrics, batcher submit
  registry    which model versions are loaded and ready; immutable snapshots swapped on change
  batcher     groups work items and hands a batch to a callable; knows neither protocols nor models
  runtimes/   one model file each (ONNX Runtime or TensorFlow SavedModel), nothing about protocols
"""
