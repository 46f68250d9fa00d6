"""seqserve against the peer a user would pick instead, KServe's Python ModelServer, and against the
no-op floor, with the clients Python users run and with a native one, in one run (`make bench-peers`).

Every server serves the same ONNX files with the same tokenizer.json (a scratch repository holding only
the chosen models; the peer gets a manifest of the same files, bench/kserve_peer.py, run from its own
virtualenv because kserve and tritonclient cannot share a process). KServe runs twice: padding every
text to max_length (as its tokenizer.json pads), and padding each request only to its longest text +
the model's `sequence.trailing_padding` (`--trim N`, one process per N), as a user of a variable-length
graph could write it. This process is the load generator and never imports kserve: every server gets
the same tritonclient.grpc.aio ModelInfer client (seqserve loadtest's V2 target), and seqserve's own
API, TF Serving's Predict and the floor's get `seqserve loadtest`'s clients. The floor is
bench/echo_server.py, a no-op on the same grpc.aio stack. A Python client saturates before the
transport does, so the floor and seqserve are also measured with h2load sending pre-encoded gRPC frames
(bench/native_client.py), every call's gRPC status checked against seqserve's own counter.

Before any measurement every server but the floor must answer the same probabilities (within 1e-5) to
the same real texts over V2 ModelInfer; one that differs fails the run. Per round, each cell (model,
concurrency, texts per request) measures every server in turn, the order rotated from round to round;
each measurement is a warm-up, then a measured phase with the servers' CPU time read from /proc around
it (every process of a server: `--workers` ones have several). The targets are judged against the
floor (and KServe, the baseline tree, one worker) measured in the same round, by the range of the
per-round figures (PASS only when the whole range clears the target). RSS per process is read after the
last round.

One module per job: servers (who runs, and their start-up), parity, model_cost (the in-process bound),
rounds (the Python clients), native (h2load), verdicts (targets), cpu_account (where a request's CPU
goes), tables and report; __main__ runs them in order.

    .venv/bin/python -m bench.peers --models models --kserve-python .venv-kserve/bin/python
"""
