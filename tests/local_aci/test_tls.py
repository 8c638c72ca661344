"""The local CA signs one server certificate and can vouch for nothing else: the server's key is
readable by its user only, the CA's key is nowhere, and the CA's name constraints permit only the
server certificate's names; clients that trust the bundle verify the server."""

import socket
import stat
import threading

import pytest
from cryptography import x509

from prefect_aci.local_aci.tls import make_tls

NAMES = ("management.azure.com", "*.vault.azure.net")


def certificates(path) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(path.read_bytes())


def test_the_server_key_is_readable_by_its_user_only(tmp_path):
    tls = make_tls(tmp_path / "tls", names=NAMES)
    assert stat.S_IMODE(tls.key.stat().st_mode) == 0o600


def test_no_ca_key_is_kept(tmp_path):
    tls = make_tls(tmp_path / "tls", names=NAMES)
    keys = [p.name for p in tls.key.parent.iterdir() if b"PRIVATE KEY" in p.read_bytes()]
    assert keys == [tls.key.name]


def test_the_server_certificate_is_not_a_ca_and_its_ca_is_name_constrained(tmp_path):
    tls = make_tls(tmp_path / "tls", addresses=("127.0.0.1", "172.29.8.1"), names=NAMES)
    server, ca = certificates(tls.certificate)
    assert server.issuer == ca.subject != server.subject
    assert server.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    constraints = ca.extensions.get_extension_for_class(x509.NameConstraints)
    assert constraints.critical
    permitted = {str(n.value) for n in constraints.value.permitted_subtrees}
    assert permitted == {
        "localhost",
        "management.azure.com",
        "vault.azure.net",
        "127.0.0.1/32",
        "172.29.8.1/32",
    }
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.path_length == 0


@pytest.mark.parametrize("host", ["127.0.0.1", "management.azure.com", "kv-1.vault.azure.net"])
def test_a_client_trusting_the_bundle_verifies_the_server(tmp_path, host):
    tls = make_tls(tmp_path / "tls", names=NAMES)
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        port = listener.getsockname()[1]

        def serve() -> None:
            connection, _ = listener.accept()
            with tls.server_context().wrap_socket(connection, server_side=True) as wrapped:
                wrapped.sendall(b"ok")

        server = threading.Thread(target=serve, daemon=True)
        server.start()
        with socket.create_connection(("127.0.0.1", port)) as raw:
            context = tls.client_context()
            with context.wrap_socket(raw, server_hostname=host) as wrapped:
                assert wrapped.recv(2) == b"ok"
        server.join(10)


@pytest.mark.filterwarnings("ignore::cryptography.utils.CryptographyDeprecationWarning")
def test_the_bundle_holds_the_ca_not_the_server_certificate(tmp_path):
    tls = make_tls(tmp_path / "tls", names=NAMES)
    server, ca = certificates(tls.certificate)
    bundled = certificates(tls.bundle)
    assert ca in bundled and server not in bundled
