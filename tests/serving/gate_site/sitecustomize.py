"""Run at start-up by every Python process with this folder on its PYTHONPATH (tests/serving/gate.py's
`Gate.env`): a gated server and its workers load ONNX models through tests.serving.gate, which gates
the slow model's runs."""

import os

if os.environ.get("SEQSERVE_TEST_GATE"):
    import serving.runtimes

    serving.runtimes._MODULES["onnx"] = "tests.serving.gate"
