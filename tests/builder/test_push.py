"""`prefect-aci image push` against a real registry (Debian's docker-registry, htpasswd)."""

import os
import re
import shutil
import socket
from pathlib import Path

import pytest

from image_builder.local_registry import LocalRegistry
from prefect_aci.core.engine import make_network
from prefect_aci.core.records import ImageRecord
from prefect_aci.local_aci.tls import make_tls
from tests.conftest import REGISTRY_PASSWORD, REGISTRY_USER, run_builder
from tests.stand_ins import CuttingProxy

USER, PASSWORD = REGISTRY_USER, REGISTRY_PASSWORD
CREDS = {"PREFECT_ACI_REGISTRY_USERNAME": USER, "PREFECT_ACI_REGISTRY_PASSWORD": PASSWORD}
NO_CREDS = {"PREFECT_ACI_REGISTRY_USERNAME": "", "PREFECT_ACI_REGISTRY_PASSWORD": ""}


@pytest.fixture
def record(built_image, tmp_path):
    path = tmp_path / "image.json"
    path.write_text(built_image.model_dump_json())
    return path


def push(record, *args, env=None):
    return run_builder("push", "--record", str(record), *args, env={**NO_CREDS, **(env or {})})


def saved(record) -> ImageRecord:
    return ImageRecord.model_validate_json(record.read_text())


def errors(result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("error:")]


def uploaded_layers(stderr: str) -> list[int]:
    return [int(n) for n in re.findall(r"(\d+) layer\(s\) uploaded", stderr)]


def test_push_records_the_digest_the_registry_serves(registry, record, built_image):
    result = push(
        record, "--registry", registry.host, "--repository", "team/prefect-aci", env=CREDS
    )
    assert result.returncode == 0, result.stderr
    image = saved(record)
    served = registry.manifest_digest("team/prefect-aci", image.published.tags[0])
    assert image.published.digest == served
    assert image.published.reference == f"{registry.host}/team/prefect-aci@{served}"
    assert result.stdout.strip() == image.published.reference
    assert image.image_id == built_image.image_id
    assert image.repository == built_image.repository, "the local name is the local name"


def test_pushing_twice_into_a_namespace_goes_to_the_same_path(registry, record, built_image):
    env = {**CREDS, "PREFECT_ACI_REGISTRY_NAMESPACE": "team"}
    paths = []
    for _ in range(2):
        result = push(record, "--registry", registry.host, env=env)
        assert result.returncode == 0, result.stderr
        paths.append(saved(record).published.repository)
    expected = f"team/{built_image.repository}"
    assert paths == [expected, expected]
    assert saved(record).repository == built_image.repository
    assert registry.tags(expected)


def test_push_sends_every_tag_the_image_earns(registry, record, built_image):
    result = push(record, "--registry", registry.host, "--latest", env=CREDS)
    assert result.returncode == 0, result.stderr
    pushed = saved(record).published
    assert sorted(registry.tags(pushed.repository)) == sorted(pushed.tags)
    assert "latest" in pushed.tags
    minor = ".".join(built_image.versions["python"].split(".")[:2])
    assert f"{built_image.versions['prefect']}-python{minor}" in pushed.tags


def test_repush_of_unchanged_image_uploads_no_layer(registry, record):
    first = push(record, "--registry", registry.host, env=CREDS)
    assert first.returncode == 0, first.stderr
    assert uploaded_layers(first.stderr)[0] > 0
    again = push(record, "--registry", registry.host, env=CREDS)
    assert again.returncode == 0, again.stderr
    assert set(uploaded_layers(again.stderr)) == {0}


def test_wrong_password_is_one_line_and_never_printed(registry, record):
    wrong = "Wr0ng-pa55word-xyz"
    result = push(
        record,
        "--registry",
        registry.host,
        env={"PREFECT_ACI_REGISTRY_USERNAME": USER, "PREFECT_ACI_REGISTRY_PASSWORD": wrong},
    )
    assert result.returncode == 1
    [error] = errors(result)
    assert f"rejected the credentials for user {USER}" in error
    assert "PREFECT_ACI_REGISTRY_USERNAME/PREFECT_ACI_REGISTRY_PASSWORD" in error
    assert wrong not in result.stdout + result.stderr
    assert saved(record).published is None


def test_anonymous_push_to_a_registry_that_wants_auth(registry, record):
    result = push(record, "--registry", registry.host, "--attempts", "1")
    assert result.returncode == 1
    [error] = errors(result)
    assert "set PREFECT_ACI_REGISTRY_USERNAME and PREFECT_ACI_REGISTRY_PASSWORD" in error


def test_unreachable_registry_is_a_clear_error(record):
    # A port held bound but not listening: refused for as long as the test runs, whatever else
    # on this machine takes free ports meanwhile.
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        port = held.getsockname()[1]
        result = push(record, "--registry", f"127.0.0.1:{port}", env=CREDS)
    assert result.returncode == 1
    [error] = errors(result)
    assert "connection refused" in error
    assert PASSWORD not in result.stderr


def test_credentials_never_reach_output_or_record(registry, record):
    result = push(record, "--registry", registry.host, env=CREDS)
    assert result.returncode == 0, result.stderr
    assert PASSWORD not in result.stdout + result.stderr + record.read_text()


def test_registry_cut_mid_push_then_back_finishes_with_a_true_digest(registry, record):
    proxy = CuttingProxy(registry.port, cut_after=20_000_000, outage=3)
    try:
        result = push(record, "--registry", f"127.0.0.1:{proxy.port}", env=CREDS)
    finally:
        proxy.close()
    assert proxy.cut_at is not None, "the proxy never cut the push: the test proved nothing"
    assert result.returncode == 0, result.stderr
    pushed = saved(record).published
    assert pushed.digest == registry.manifest_digest(pushed.repository, pushed.tags[0])


def test_registry_gone_mid_push_fails_clearly_and_records_nothing(registry, record):
    proxy = CuttingProxy(registry.port, cut_after=20_000_000, outage=None)
    try:
        result = push(record, "--registry", f"127.0.0.1:{proxy.port}", "--attempts", "2", env=CREDS)
    finally:
        proxy.close()
    assert proxy.cut_at is not None
    assert result.returncode == 1
    [error] = errors(result)
    assert "failed after 2 attempt(s)" in error
    assert saved(record).published is None


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--registry", "Not A Host"], "registry must be a host name"),
        (
            ["--registry", "127.0.0.1:5000", "--repository", "Bad_Repo!"],
            "repository must be lower-case",
        ),
        (
            ["--registry", "docker.io", "--repository", "prefect-aci"],
            "Docker Hub repositories are <namespace>/<name>",
        ),
        ([], "name the registry"),
    ],
)
def test_malformed_names_are_caught_before_anything_is_sent(record, args, expected):
    result = push(record, *args)
    assert result.returncode == 1
    [error] = errors(result)
    assert expected in error


def test_docker_hub_without_token_says_which_variables(record):
    result = push(
        record,
        "--registry",
        "docker.io",
        "--repository",
        "me/prefect-aci",
        env={"PREFECT_ACI_DOCKERHUB_USERNAME": "", "PREFECT_ACI_DOCKERHUB_TOKEN": ""},
    )
    assert result.returncode == 1
    [error] = errors(result)
    assert "PREFECT_ACI_DOCKERHUB_USERNAME and PREFECT_ACI_DOCKERHUB_TOKEN" in error


@pytest.mark.slow  # runs the command in a subprocess
def test_push_before_building_is_a_clear_error(tmp_path):
    result = push(tmp_path / "missing.json", "--registry", "127.0.0.1:5000")
    assert result.returncode == 1
    [error] = errors(result)
    assert "build the image first" in error


def test_record_of_an_image_the_engine_lacks(tmp_path, registry, built_image):
    path = tmp_path / "image.json"
    path.write_text(
        built_image.model_copy(update={"image_id": "sha256:" + "0" * 64}).model_dump_json()
    )
    result = push(path, "--registry", registry.host, env=CREDS)
    assert result.returncode == 1
    [error] = errors(result)
    assert "build it first" in error


# A registry with a certificate from a private CA, as in-house registries have. It listens on the
# host's address on a bridge network the test creates with a gateway it chooses (a new engine's
# default bridge may not report its gateway): the engine skips certificate checks for
# 127.0.0.0/8, not for this address.
ENGINE_CERTS = Path("/etc/docker/certs.d")
# Tried in turn until one does not overlap a network of this machine.
PRIVATE_SUBNETS = ("172.31.250.0/24", "10.250.250.0/24", "192.168.250.0/24")


@pytest.fixture(scope="module")
def host_address_on_a_test_network(docker_client):
    network, prefix = make_network(
        docker_client, f"prefect-aci-test-tls-{os.getpid()}", PRIVATE_SUBNETS
    )
    yield f"{prefix}.1"
    network.remove()


@pytest.fixture
def tls_registry(tmp_path, host_address_on_a_test_network):
    address = host_address_on_a_test_network
    tls = make_tls(tmp_path / "tls", ("127.0.0.1", address))
    with LocalRegistry(
        tmp_path / "tls-registry",
        users={USER: PASSWORD},
        address=address,
        tls=(tls.certificate, tls.key),
    ) as registry:
        yield registry, tls


@pytest.fixture
def engine_trusts_it(tls_registry):
    """The CA where the engine looks for it, per registry, on every connection."""
    registry, tls = tls_registry
    if not os.access(ENGINE_CERTS.parent, os.W_OK):
        pytest.fail(f"this test writes {ENGINE_CERTS}/<registry>/ca.crt: run it as root")
    created = not ENGINE_CERTS.exists()
    folder = ENGINE_CERTS / registry.host
    folder.mkdir(parents=True)
    (folder / "ca.crt").write_bytes(tls.certificate.read_bytes())
    yield
    shutil.rmtree(folder)
    if created and not any(ENGINE_CERTS.iterdir()):
        ENGINE_CERTS.rmdir()


@pytest.mark.parametrize("credentials", [CREDS, NO_CREDS], ids=["login", "anonymous"])
def test_untrusted_registry_certificate_says_where_the_engine_wants_the_ca(
    tls_registry, record, credentials
):
    registry, _ = tls_registry
    result = push(record, "--registry", registry.host, env=credentials)
    assert result.returncode == 1
    [error] = errors(result)
    assert "does not trust the TLS certificate" in error
    assert "x509" in error
    assert f"/etc/docker/certs.d/{registry.host}/ca.crt" in error
    assert saved(record).published is None


def test_push_over_tls_with_a_trusted_private_ca(tls_registry, engine_trusts_it, record):
    registry, _ = tls_registry
    result = push(record, "--registry", registry.host, env=CREDS)
    assert result.returncode == 0, result.stderr
    pushed = saved(record).published
    # Asked over HTTPS, verifying the same CA.
    assert registry.manifest_digest(pushed.repository, pushed.tags[0]) == pushed.digest
    assert pushed.reference == f"{registry.host}/{pushed.repository}@{pushed.digest}"
