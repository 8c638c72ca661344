"""A throwaway certificate authority for local HTTPS stand-ins (Azure's SDKs refuse to send bearer
tokens over plain HTTP), made with `cryptography`, and a CA bundle that trusts it: certifi's roots
plus this certificate, handed to the SDKs through the CA bundle settings they read, never built
into an image."""

import datetime
import ipaddress
import ssl
from dataclasses import dataclass
from pathlib import Path

import certifi
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


@dataclass(frozen=True)
class LocalTls:
    certificate: Path
    key: Path
    bundle: Path  # certifi's roots plus this certificate

    def env(self) -> dict[str, str]:
        """Trust it in a child process: requests reads REQUESTS_CA_BUNDLE, while aiohttp and
        Python's ssl read SSL_CERT_FILE when their default context is made."""
        return {"REQUESTS_CA_BUNDLE": str(self.bundle), "SSL_CERT_FILE": str(self.bundle)}

    def client_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.bundle))

    def server_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.certificate, self.key)
        return context


def make_tls(
    folder: Path,
    addresses: tuple[str, ...] = ("127.0.0.1",),
    names: tuple[str, ...] = (),
    days: int = 1,
) -> LocalTls:
    """``names``: host names besides localhost the certificate is good for, such as the Azure
    host names the local ACI's stand-ins answer for."""
    folder.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "prefect-aci local stand-in")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    *(x509.DNSName(host) for host in ("localhost", *names)),
                    *(x509.IPAddress(ipaddress.ip_address(a)) for a in addresses),
                ]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    pem = certificate.public_bytes(serialization.Encoding.PEM)
    paths = LocalTls(folder / "cert.pem", folder / "key.pem", folder / "bundle.pem")
    paths.certificate.write_bytes(pem)
    paths.key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    paths.bundle.write_bytes(Path(certifi.where()).read_bytes() + b"\n" + pem)
    return paths
