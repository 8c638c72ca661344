"""A stack's Azurite takes a random account key of its own, and local ACI makes blob containers
with it: Azurite's published development key, the same on every machine, opens nothing."""

import subprocess

import pytest
from azure.core.exceptions import HttpResponseError
from azure.storage.blob import BlobServiceClient

from image_builder.local_registry import free_port, wait_for_port
from prefect_aci.core.paths import BUILD_DIR
from prefect_aci.demo import azurite
from prefect_aci.demo.local_azure import make_local_side
from prefect_aci.local_aci.resources import Recorded
from prefect_aci.local_aci.storage import BLOB_CONTAINERS, blob_containers


def local_side(folder):
    return make_local_side(
        folder,
        "stack-1",
        "net-1",
        "172.29.8.2",
        blob_endpoint="https://172.29.8.1:10000/devstoreaccount1",
        addresses=("172.29.8.1", "172.29.8.2"),
    )


def test_each_stack_has_its_own_random_account_key(tmp_path):
    first = local_side(tmp_path / "a").config.blob_account_key
    second = local_side(tmp_path / "b").config.blob_account_key
    assert first and second and first != second
    assert azurite.ACCOUNT_KEY not in (first, second)


@pytest.fixture(scope="module")
def azurite_with_own_key(tmp_path_factory):
    """Azurite on plain HTTP with the environment a stack starts it with."""
    folder = tmp_path_factory.mktemp("azurite")
    key = local_side(folder / "side").config.blob_account_key
    binary = azurite.install(BUILD_DIR / "demo" / "node")
    port = free_port()
    with (folder / "azurite.log").open("ab") as log:
        process = subprocess.Popen(
            azurite.command(binary, port, folder / "data"),
            stdout=log,
            stderr=subprocess.STDOUT,
            env={"PATH": "/usr/bin:/bin", **azurite.accounts_env(key)},
        )
    try:
        wait_for_port(port, timeout=60)
        yield f"http://127.0.0.1:{port}/{azurite.ACCOUNT}", key
    finally:
        process.kill()
        process.wait(10)


@pytest.mark.slow  # Azurite, installed from npm, in a subprocess
def test_the_published_development_key_is_refused(azurite_with_own_key):
    account, _ = azurite_with_own_key
    published = {"account_name": azurite.ACCOUNT, "account_key": azurite.ACCOUNT_KEY}
    with pytest.raises(HttpResponseError) as refused:
        BlobServiceClient(account, credential=published).create_container("stolen")
    assert refused.value.status_code == 403


@pytest.mark.slow  # Azurite, installed from npm, in a subprocess
def test_local_aci_makes_blob_containers_with_the_stacks_key(azurite_with_own_key):
    account, key = azurite_with_own_key
    listener = blob_containers(account, verify="", account_key=key)
    listener(
        "recorded",
        Recorded(id="c", type=BLOB_CONTAINERS, body={"name": "flow-code"}, deployment="d"),
    )
    own = {"account_name": azurite.ACCOUNT, "account_key": key}
    names = [c.name for c in BlobServiceClient(account, credential=own).list_containers()]
    assert names == ["flow-code"]
