"""TLS and mutual TLS on every port: gRPC (both protocols), REST and /metrics, which may have an
address of its own. Certificates: tests/pki.py.
"""

from __future__ import annotations

import asyncio
import http.client
import ssl
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import grpc
import numpy as np
import pytest
import tritonclient.grpc as triton
import tritonclient.http.aio as triton_http_aio
from tritonclient.utils import InferenceServerException

from seqserve.cli import main
from seqserve.v1 import classifier_pb2, classifier_pb2_grpc
from serving.settings import SettingsError, build_settings
from tests.pki import Pem, Pki, client_context
from tests.reliability.conftest import NORMAL_TEXT, assert_answers_normally
from tests.serving.rest_client import call, text_tensor
from tests.serving.server_process import ServerProcess, free_port

# What a client sees when the handshake fails or a plaintext request meets a TLS port.
REFUSED = (ssl.SSLError, urllib.error.URLError, ConnectionError, http.client.HTTPException)


def tls_channel(address: str, root: Pem, client: Pem | None = None) -> grpc.Channel:
    credentials = grpc.ssl_channel_credentials(
        root_certificates=root.cert.read_bytes(),
        private_key=client.key.read_bytes() if client else None,
        certificate_chain=client.cert.read_bytes() if client else None,
    )
    return grpc.secure_channel(address, credentials)


def classify_code(channel: grpc.Channel) -> grpc.StatusCode:
    stub = classifier_pb2_grpc.ClassifierStub(channel)
    try:
        response = stub.Classify(
            classifier_pb2.ClassifyRequest(model="sarcasm-gru", texts=[NORMAL_TEXT]), timeout=5
        )
    except grpc.RpcError as error:
        return error.code()
    finally:
        channel.close()
    assert len(response.predictions) == 1
    return grpc.StatusCode.OK


def v2_probabilities(address: str, **ssl: str | bool) -> np.ndarray:
    with triton.InferenceServerClient(address, **ssl) as client:
        text = triton.InferInput("text", [1], "BYTES")
        text.set_data_from_numpy(np.array([NORMAL_TEXT], dtype=object))
        return client.infer("sarcasm-gru", [text], client_timeout=5).as_numpy("probabilities")


@pytest.fixture(scope="module")
def mtls_server(
    tiny_model_repository: Path, pki: Pki, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    with ServerProcess(
        tiny_model_repository, tmp_path_factory.mktemp("mtls-logs"),
        "--tls-cert", str(pki.server.cert), "--tls-key", str(pki.server.key),
        "--tls-client-ca", str(pki.ca.cert),
    ) as process:  # fmt: skip
        yield process


def test_mutual_tls_serves_only_clients_with_a_certificate_from_its_ca(mtls_server, pki):
    address = mtls_server.address
    assert mtls_server.ready["tls"] is True
    assert classify_code(tls_channel(address, pki.ca, pki.client)) == grpc.StatusCode.OK
    assert classify_code(grpc.insecure_channel(address)) == grpc.StatusCode.UNAVAILABLE  # plaintext
    assert classify_code(tls_channel(address, pki.ca)) == grpc.StatusCode.UNAVAILABLE  # no client certificate
    assert (
        classify_code(tls_channel(address, pki.ca, pki.stranger)) == grpc.StatusCode.UNAVAILABLE
    )  # wrong CA
    # a client that does not trust the server's CA refuses the server
    assert classify_code(tls_channel(address, pki.stranger_ca, pki.client)) == grpc.StatusCode.UNAVAILABLE


def test_mutual_tls_with_tritonclient(mtls_server, pki):
    good = {
        "ssl": True,
        "root_certificates": str(pki.ca.cert),
        "private_key": str(pki.client.key),
        "certificate_chain": str(pki.client.cert),
    }
    assert v2_probabilities(mtls_server.address, **good).shape == (1, 2)
    for bad in (
        {},  # plaintext
        {"ssl": True, "root_certificates": str(pki.ca.cert)},  # no client certificate
        {**good, "private_key": str(pki.stranger.key), "certificate_chain": str(pki.stranger.cert)},
    ):
        with pytest.raises(InferenceServerException) as error:
            v2_probabilities(mtls_server.address, **bad)
        assert "UNAVAILABLE" in str(error.value.status())


def rest_status(url: str, context: ssl.SSLContext | None) -> int:
    body = {"inputs": [text_tensor([NORMAL_TEXT])]}
    return call(f"{url}/v2/models/sarcasm-gru/infer", body, context=context, timeout=5).status


def metrics_status(url: str, context: ssl.SSLContext | None) -> int:
    with urllib.request.urlopen(url, timeout=5, context=context) as response:
        assert b"seqserve_requests_total" in response.read()
        return response.status


@pytest.mark.parametrize("port", ["rest", "metrics"])
def test_every_http_port_refuses_plaintext_and_foreign_clients_under_mutual_tls(mtls_server, pki, port):
    url = mtls_server.rest_url if port == "rest" else mtls_server.metrics_url
    status = rest_status if port == "rest" else metrics_status
    assert url.startswith("https://")
    assert status(url, client_context(pki.ca, pki.client)) == 200
    for refused in (
        lambda: status(url.replace("https://", "http://"), None),  # plaintext
        lambda: status(url, client_context(pki.ca, pki.stranger)),  # certificate from a foreign CA
        lambda: status(url, client_context(pki.stranger_ca, pki.client)),  # does not trust the server
    ):
        with pytest.raises(REFUSED):
            refused()
    if port == "metrics":
        with pytest.raises(REFUSED):
            status(url, client_context(pki.ca))  # no client certificate
    assert_answers_normally(
        classifier_pb2_grpc.ClassifierStub(tls_channel(mtls_server.address, pki.ca, pki.client))
    )


def test_rest_without_a_client_certificate_reaches_only_the_health_checks(mtls_server, pki):
    """Kubernetes' HTTPS probes present no certificate (and verify none): they must see readiness."""
    prober = ssl.create_default_context()
    prober.check_hostname, prober.verify_mode = False, ssl.CERT_NONE
    for path in ("/v2/health/live", "/v2/health/ready"):
        assert call(mtls_server.rest_url + path, context=prober).status == 200
    for path in ("/v2", "/v2/models/sarcasm-gru", "/"):
        reply = call(mtls_server.rest_url + path, context=client_context(pki.ca))
        assert reply.status == 403 and "--tls-client-ca" in reply.json()["error"]
    assert rest_status(mtls_server.rest_url, client_context(pki.ca)) == 403


def test_mutual_tls_with_tritonclient_http_asyncio(mtls_server, pki):
    async def infer(context: ssl.SSLContext) -> np.ndarray:
        url = urlsplit(mtls_server.rest_url).netloc
        async with triton_http_aio.InferenceServerClient(url, ssl=True, ssl_context=context) as client:
            text = triton_http_aio.InferInput("text", [1], "BYTES")
            text.set_data_from_numpy(np.array([NORMAL_TEXT], dtype=object))
            return (await client.infer("sarcasm-gru", [text])).as_numpy("probabilities")

    assert asyncio.run(infer(client_context(pki.ca, pki.client))).shape == (1, 2)
    with pytest.raises(InferenceServerException) as error:
        asyncio.run(infer(client_context(pki.ca)))
    assert error.value.status() == "403"


def test_classify_command_speaks_mutual_tls(mtls_server, pki, capsys):
    base = [
        "classify",
        "--address",
        mtls_server.address,
        "--model",
        "sarcasm-gru",
        "--tls-ca",
        str(pki.ca.cert),
    ]
    client = ["--tls-cert", str(pki.client.cert), "--tls-key", str(pki.client.key)]
    assert main([*base, *client, NORMAL_TEXT]) == 0
    assert capsys.readouterr().out.startswith("sarcasm-gru v1")
    assert main([*base, NORMAL_TEXT]) == 1  # no client certificate
    assert "UNAVAILABLE" in capsys.readouterr().err
    assert main([*base, "--tls-cert", str(pki.client.cert), NORMAL_TEXT]) == 2  # key missing


def test_tls_without_client_certificates_and_metrics_on_their_own_address(
    tiny_model_repository, pki, tmp_path
):
    """With two workers: their shared REST port and the supervisor's /metrics speak TLS too."""
    metrics_port = free_port()
    with ServerProcess(
        tiny_model_repository, tmp_path, "--workers", "2",
        "--tls-cert", str(pki.server.cert), "--tls-key", str(pki.server.key),
        "--metrics-host", "127.0.0.2", "--metrics-port", str(metrics_port),
    ) as server:  # fmt: skip
        assert classify_code(tls_channel(server.address, pki.ca)) == grpc.StatusCode.OK
        assert classify_code(grpc.insecure_channel(server.address)) == grpc.StatusCode.UNAVAILABLE
        probabilities = v2_probabilities(server.address, ssl=True, root_certificates=str(pki.ca.cert))
        assert probabilities.shape == (1, 2)
        with pytest.raises(InferenceServerException):
            v2_probabilities(server.address)  # plaintext
        trusting = client_context(pki.ca)
        assert rest_status(server.rest_url, trusting) == 200
        with pytest.raises(REFUSED):
            rest_status(server.rest_url.replace("https://", "http://"), None)
        assert server.metrics_url == f"https://127.0.0.2:{metrics_port}/metrics"
        assert metrics_status(server.metrics_url, trusting) == 200
        with pytest.raises(REFUSED):
            metrics_status(server.metrics_url.replace("https://", "http://"), None)
        with pytest.raises(urllib.error.URLError):  # not bound on the gRPC host
            urllib.request.urlopen(f"https://127.0.0.1:{metrics_port}/metrics", timeout=5, context=trusting)


def test_plaintext_server_still_serves_plaintext(tiny_model_repository, tmp_path):
    with ServerProcess(tiny_model_repository, tmp_path) as server:
        assert server.ready["tls"] is False
        assert_answers_normally(server.stub)


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--tls-cert", "server.crt"], "go together"),
        (["--tls-key", "server.key"], "go together"),
        (["--tls-client-ca", "ca.crt"], "needs --tls-cert"),
    ],
)
def test_incomplete_tls_settings_are_refused(flags, message):
    with pytest.raises(SettingsError, match=message):
        build_settings(flags, environ={})


def test_unreadable_certificate_fails_start_up(tiny_model_repository, tmp_path, pki):
    with pytest.raises(RuntimeError, match="did not become ready"):
        ServerProcess(
            tiny_model_repository,
            tmp_path,
            "--tls-cert",
            str(tmp_path / "missing.crt"),
            "--tls-key",
            str(pki.server.key),
        )
    assert "start-up failed" in next(tmp_path.glob("server-*.log")).read_text()
