"""Throw-away certificates for TLS tests: a CA signing the server's certificate (for 127.0.0.1 and .2) and a
client certificate, and a second, unrelated CA with a client certificate of its own."""

from __future__ import annotations

import datetime
import ipaddress
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


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
                [
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                    x509.IPAddress(ipaddress.ip_address("127.0.0.2")),
                    x509.DNSName("localhost"),
                ]
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


def make_pki(directory: Path) -> Pki:

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


def client_context(root: Pem, client: Pem | None = None) -> ssl.SSLContext:
    """A TLS client trusting `root`, presenting `client`'s certificate if given."""
    context = ssl.create_default_context(cafile=str(root.cert))
    if client is not None:
        context.load_cert_chain(str(client.cert), str(client.key))
    return context
