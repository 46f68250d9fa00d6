"""TLS and mutual TLS on the gRPC port (both protocols), and /metrics on an address of its own.

Throw-away certificates are made here: a CA signing the server's certificate (for 127.0.0.1) and a
client certificate, and a second, unrelated CA with a client certificate of its own.
"""

from __future__ import annotations

import datetime
import ipaddress
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np
import pytest
import tritonclient.grpc as triton
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from tritonclient.utils import InferenceServerException

from seqserve.cli import main
from seqserve.v1 import classifier_pb2, classifier_pb2_grpc
from serving.settings import SettingsError, build_settings
from tests.reliability.conftest import NORMAL_TEXT, assert_answers_normally
from tests.serving.server_process import ServerProcess, free_port


@dataclass(frozen=True)
class Pem:
    cert: Path
    key: Path


def _write(directory: Path, stem: str, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> Pem:
    pem = Pem(directory / f"{stem}.crt", directory / f"{stem}.key")
    pem.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pem.key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return pem


def _certificate(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None,
    *,
    ca: bool = False,
    server: bool = False,
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    issuer_name, signing_key = (issuer[0].subject, issuer[1]) if issuer else (name, key)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        ).add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
    elif not ca:
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
        )
    return builder.sign(signing_key, hashes.SHA256())


@dataclass(frozen=True)
class Pki:
    ca: Pem
    server: Pem
    client: Pem
    stranger_ca: Pem
    stranger: Pem  # a client certificate signed by the unrelated CA


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    directory = tmp_path_factory.mktemp("pki")

    def authority(stem: str) -> tuple[Pem, x509.Certificate, ec.EllipticCurvePrivateKey]:
        key = ec.generate_private_key(ec.SECP256R1())
        cert = _certificate(f"seqserve test {stem}", key, None, ca=True)
        return _write(directory, stem, cert, key), cert, key

    def leaf(
        stem: str, issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey], server: bool = False
    ) -> Pem:
        key = ec.generate_private_key(ec.SECP256R1())
        return _write(directory, stem, _certificate(stem, key, issuer, server=server), key)

    ca, ca_cert, ca_key = authority("ca")
    stranger_ca, stranger_cert, stranger_key = authority("stranger-ca")
    return Pki(
        ca=ca,
        server=leaf("server", (ca_cert, ca_key), server=True),
        client=leaf("client", (ca_cert, ca_key)),
        stranger_ca=stranger_ca,
        stranger=leaf("stranger", (stranger_cert, stranger_key)),
    )


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
    metrics_port = free_port()
    with ServerProcess(
        tiny_model_repository, tmp_path,
        "--tls-cert", str(pki.server.cert), "--tls-key", str(pki.server.key),
        "--metrics-host", "127.0.0.2", "--metrics-port", str(metrics_port),
    ) as server:  # fmt: skip
        assert classify_code(tls_channel(server.address, pki.ca)) == grpc.StatusCode.OK
        assert classify_code(grpc.insecure_channel(server.address)) == grpc.StatusCode.UNAVAILABLE
        probabilities = v2_probabilities(server.address, ssl=True, root_certificates=str(pki.ca.cert))
        assert probabilities.shape == (1, 2)
        with pytest.raises(InferenceServerException):
            v2_probabilities(server.address)  # plaintext
        assert server.metrics_url == f"http://127.0.0.2:{metrics_port}/metrics"
        assert "seqserve_requests_total" in server.metrics_text()
        with pytest.raises(urllib.error.URLError):  # not bound on the gRPC host
            urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5)


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
