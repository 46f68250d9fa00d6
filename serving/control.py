"""The control messages between the `--workers` supervisor (serving.supervisor) and each worker
(serving.worker), over the worker's control pipe. The very first message, supervisor -> worker, is
the worker's Settings. Standard library only: the supervisor imports it."""

READY = "ready"  # worker -> supervisor, with its port and models
SERVE = "serve"  # supervisor -> worker: every worker is ready, turn SERVING
# supervisor -> worker over the metrics pipe: the exposition in OpenMetrics (empty: the text format)
OPENMETRICS = b"openmetrics"
