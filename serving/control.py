"""The control messages between the `--workers` supervisor (serving.supervisor) and each worker
(serving.worker), over the worker's control pipe. The very first message, supervisor -> worker, is
the worker's Settings. Standard library only: the supervisor imports it."""

READY = "ready"  # worker -> supervisor, with its port and models: loaded, waiting for SERVE
SERVE = "serve"  # supervisor -> worker: turn SERVING (every worker is ready, or the server already is)
PING = "ping"  # supervisor -> worker: the heartbeat, answered from the worker's event loop
PONG = "pong"  # worker -> supervisor: the answer to PING
# supervisor -> worker over the metrics pipe: the exposition in OpenMetrics (empty: the text format)
OPENMETRICS = b"openmetrics"
