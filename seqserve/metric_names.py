"""The server's Prometheus metric names, defined once: the server registers them
(serving.metrics) and the load tester reads them back (seqserve.loadtest.promstats). They are a stable
contract: dashboards and alerts depend on them."""

REQUEST_DURATION = "seqserve_request_duration_seconds"
QUEUE_WAIT = "seqserve_queue_wait_seconds"
TOKENIZE_DURATION = "seqserve_tokenize_duration_seconds"
INFERENCE_DURATION = "seqserve_inference_duration_seconds"
BATCH_SIZE = "seqserve_batch_size"
REQUESTS = "seqserve_requests"  # a counter: exposed as seqserve_requests_total
TEXTS = "seqserve_texts"
QUEUE_EXPIRED = "seqserve_queue_expired"
REQUESTS_IN_FLIGHT = "seqserve_requests_in_flight"
QUEUE_DEPTH = "seqserve_queue_depth"
MODEL_READY = "seqserve_model_ready"
# Counters whose rates divide into each model's compute per text, whatever its batch sizes: the
# tokenize + runtime time of its executed batches, and the texts in them.
COMPUTE_SECONDS = "seqserve_compute_seconds"  # a counter: exposed as seqserve_compute_seconds_total
COMPUTE_TEXTS = "seqserve_compute_texts"  # a counter: exposed as seqserve_compute_texts_total
EXPLAIN_DURATION = "seqserve_explain_seconds"
EXPLAIN_VARIANTS = "seqserve_explain_variants"
EVENT_LOOP_LAG = "seqserve_event_loop_lag_seconds"
# Written by the --workers supervisor (serving.metrics_merge), not by a worker.
WORKERS = "seqserve_workers"  # a gauge by state: ready, starting, draining
WORKER_RESTARTS = "seqserve_worker_restarts"  # a counter by reason: exit, timeout, rss

# The latency histograms by the stage of a request they time.
STAGES: dict[str, str] = {
    "queue_wait": QUEUE_WAIT,
    "tokenize": TOKENIZE_DURATION,
    "inference": INFERENCE_DURATION,
    "request": REQUEST_DURATION,
}
