"""A throwaway certificate authority for local HTTPS stand-ins (Azure's SDKs refuse to send bearer
tokens over plain HTTP), made with `cryptography`, and a CA bundle that trusts it: certifi's roots
plus the CA's certificate, handed to the SDKs through the CA bundle settings they read, never
built into an image.

The CA signs one server certificate and nothing else: its name constraints permit only the names
and addresses of that certificate, and its key is never written, so whoever reads the bundle (every
container of a stack mounts it) or the server's key cannot vouch for any other host."""

import datetime
import ipaddress
import ssl
from dataclasses import dataclass
from pathlib import Path

import certifi
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True)
class LocalTls:
    certificate: Path  # the server's certificate, then the CA's (the chain a server sends)
    key: Path  # the server's key, mode 0600
    bundle: Path  # certifi's roots plus the CA's certificate

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


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _permitted(host: str) -> x509.GeneralName:
    """A name constraint covering ``host``: a DNS name covers its subdomains, so a wildcard's
    constraint is its parent."""
    return x509.DNSName(host.removeprefix("*."))


def make_tls(
    folder: Path,
    addresses: tuple[str, ...] = ("127.0.0.1",),
    names: tuple[str, ...] = (),
    days: int = 1,
) -> LocalTls:
    """``names``: host names besides localhost the certificate is good for, such as the Azure
    host names the local ACI's stand-ins answer for."""
    folder.mkdir(parents=True, exist_ok=True)
    hosts = ("localhost", *names)
    ips = [ipaddress.ip_address(a) for a in addresses]
    now = datetime.datetime.now(datetime.UTC)
    not_before, not_after = now - datetime.timedelta(minutes=5), now + datetime.timedelta(days=days)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name("prefect-aci local CA")
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.NameConstraints(
                permitted_subtrees=[
                    *(_permitted(host) for host in hosts),
                    *(x509.IPAddress(ipaddress.ip_network(ip)) for ip in ips),
                ],
                excluded_subtrees=None,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    certificate = (
        x509.CertificateBuilder()
        .subject_name(_name("prefect-aci local stand-in"))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(
            x509.SubjectAlternativeName(
                [*(x509.DNSName(host) for host in hosts), *(x509.IPAddress(ip) for ip in ips)]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    ca_pem = ca.public_bytes(serialization.Encoding.PEM)
    paths = LocalTls(folder / "cert.pem", folder / "key.pem", folder / "bundle.pem")
    paths.certificate.write_bytes(certificate.public_bytes(serialization.Encoding.PEM) + ca_pem)
    paths.key.unlink(missing_ok=True)
    paths.key.touch(mode=0o600)
    paths.key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    paths.bundle.write_bytes(Path(certifi.where()).read_bytes() + b"\n" + ca_pem)
    return paths
