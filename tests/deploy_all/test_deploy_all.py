"""`make deploy-all` from start to end without Azure: the command runs as users run it (settings
the environment, DefaultAzureCredential, the Docker engine) against real local parts where they
exist: a registry (Debian's docker-registry, htpasswd), Blob storage (Azurite over HTTPS, taking
Azure AD bearer tokens like Storage does), a Prefect server from our image. Where none exists, the
stand-ins speak the documented protocols: Azure's managed-identity token endpoint, and Azure
Resource Manager reached through azure-core's transport (tests/deploy_all_driver.py)."""

import json
import os
import subprocess
import sys
import uuid

import pytest
from azure.storage.blob import BlobServiceClient
from prefect import get_client
from prefect.settings import PREFECT_API_URL, temporary_settings
from prefect_azure import AzureContainerInstanceCredentials

from flows.deployment import FLOWS_DIR
from image_builder.local_registry import free_port, wait_for_port
from prefect_aci.core.names import FLOW_NAME
from prefect_aci.core.paths import BUILD_DIR, PROJECT_ROOT
from prefect_aci.core.records import ImageRecord
from prefect_aci.demo import azurite
from prefect_aci.deploy_all import DEPLOYMENT
from prefect_aci.local_aci.tls import make_tls
from tests.acr_stand_in import PRINCIPAL_ID, AzureStandIn
from tests.arm_stand_in import ArmStandIn
from tests.conftest import REGISTRY_PASSWORD, REGISTRY_USER

SUBSCRIPTION = "0b1f6471-1bf0-4dda-aec3-cb9272f09590"
API_KEY = "pnu_deploy_all_never_print_this"
DEMO_SECRET = "demo-secret-never-print-this"
# Settings a user would have in .env; the rest is unset so nothing of this machine leaks in.
UNSET = (
    "AZURE_CLIENT_ID",
    "AZURE_TENANT_ID",
    "AZURE_CLIENT_SECRET",
    "AZURE_USERNAME",
    "AZURE_FEDERATED_TOKEN_FILE",
    "AZURE_SUBSCRIPTION_ID",
    "AZURE_RESOURCE_GROUP",
    "PREFECT_API_URL",
    "PREFECT_API_KEY",
    "PREFECT_PROFILE",
)


def clean_env(**settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in UNSET}
    return {**env, "PYTHONPATH": str(PROJECT_ROOT), **settings}


@pytest.fixture(scope="module")
def blob_storage(tmp_path_factory):
    """Azurite on HTTPS with OAuth: a bearer token must carry a storage audience to get in."""
    folder = tmp_path_factory.mktemp("azurite")
    tls = make_tls(folder / "tls")
    binary = azurite.install(BUILD_DIR / "demo" / "node")
    port = free_port()
    with (folder / "azurite.log").open("ab") as log:
        process = subprocess.Popen(
            azurite.command(binary, port, folder / "data", tls=(tls.certificate, tls.key)),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for_port(port, timeout=60)
        account = f"https://127.0.0.1:{port}/{azurite.ACCOUNT}"
        # The test's own view (ARM creates the container in Azure): Azurite's account key.
        admin = BlobServiceClient(
            account,
            credential={"account_name": azurite.ACCOUNT, "account_key": azurite.ACCOUNT_KEY},
            connection_verify=str(tls.bundle),
        )
        yield account, admin, tls
    finally:
        process.kill()
        process.wait(10)


@pytest.fixture
def identity():
    stand_in = AzureStandIn()
    yield stand_in
    stand_in.close()


def test_deploy_all_goes_from_nothing_to_a_deployment_on_the_aci_pool(
    built_image, prefect_server, registry, blob_storage, identity, tmp_path
):
    account, admin, tls = blob_storage
    container = f"flow-code-{uuid.uuid4().hex[:8]}"
    admin.create_container(container)
    pool = f"aci-{uuid.uuid4().hex[:8]}"
    outputs = {
        "registryLoginServer": registry.host,
        "storageAccountName": azurite.ACCOUNT,
        "storageBlobEndpoint": f"{account}/",
        "flowCodeContainerName": container,
    }
    arm = ArmStandIn(bearer=identity.access_token, outputs=outputs)
    image_record = tmp_path / "image.json"
    image_record.write_text(built_image.model_dump_json())
    azure_record = tmp_path / "azure.json"
    env = clean_env(
        **identity.identity_env(),
        **tls.env(),
        AZURE_SUBSCRIPTION_ID=SUBSCRIPTION,
        AZURE_RESOURCE_GROUP="prefect-aci-rg",
        PREFECT_API_URL=prefect_server,
        PREFECT_API_KEY=API_KEY,
        PREFECT_ACI_DEMO_SECRET_VALUE=DEMO_SECRET,
        PREFECT_ACI_WORK_POOL_NAME=pool,
        PREFECT_ACI_REGISTRY_USERNAME=REGISTRY_USER,
        PREFECT_ACI_REGISTRY_PASSWORD=REGISTRY_PASSWORD,
    )
    try:
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "tests.deploy_all_driver",
                arm.transport().local,
                str(image_record),
                str(azure_record),
            ],
            capture_output=True,
            text=True,
            cwd=tmp_path,  # no .env of the checkout
            env=env,
            timeout=900,
        )
    finally:
        arm.close()
    assert result.returncode == 0, result.stderr[-4000:]

    # ARM: first everything but the worker (the registry must exist before the push), then the
    # worker on the digest just pushed; both grant the caller (read from its token) its roles.
    first, second = [r["body"]["properties"]["parameters"] for r in arm.of("PUT", "/deployments/")]
    assert first["deployWorker"]["value"] is False
    assert first["workerImage"]["value"] == ""
    assert second["deployWorker"]["value"] is True
    for params in (first, second):
        assert params["deployerPrincipalId"]["value"] == PRINCIPAL_ID
        assert params["deployerPrincipalType"]["value"] == "ServicePrincipal"
        assert params["workPoolName"]["value"] == pool

    # The push: what the worker runs is what the registry serves.
    pushed = ImageRecord.model_validate_json(image_record.read_text()).published
    assert second["workerImage"]["value"] == pushed.reference
    assert pushed.reference == f"{registry.host}/{pushed.repository}@{pushed.digest}"
    assert registry.manifest_digest(pushed.repository, pushed.tags[0]) == pushed.digest
    assert json.loads(azure_record.read_text())["workPoolName"] == pool

    # Blob storage: the flow code, uploaded with a bearer token for Storage's audience.
    blob = admin.get_blob_client(container, "key_vault_demo/flow.py")
    assert blob.download_blob().readall() == (FLOWS_DIR / "key_vault_demo" / "flow.py").read_bytes()
    resources = {r["query"].get("resource") for r in identity.token_requests}
    assert "https://storage.azure.com" in resources

    # Prefect: the deployment pulls its code from that container and runs on the ACI pool with
    # the pinned image; the worker's credentials are its managed identity, no secret.
    with temporary_settings({PREFECT_API_URL: prefect_server}):
        with get_client(sync_client=True) as client:
            deployment = client.read_deployment_by_name(f"{FLOW_NAME}/{DEPLOYMENT}")
            work_pool = client.read_work_pool(pool)
        credentials = AzureContainerInstanceCredentials.load("prefect-aci")
    assert deployment.work_pool_name == pool
    assert deployment.entrypoint == "key_vault_demo/flow.py:key_vault_demo"
    [pull] = deployment.pull_steps
    assert pull["prefect.deployments.steps.pull_with_block"]["block_document_name"] == (
        "prefect-aci-flow-code"
    )
    assert work_pool.type == "azure-container-instance"
    assert (
        work_pool.base_job_template["variables"]["properties"]["image"]["default"]
        == pushed.reference
    )
    assert credentials.client_secret is None

    assert f"prefect deployment run '{FLOW_NAME}/{DEPLOYMENT}'" in result.stdout
    output = result.stdout + result.stderr
    tokens = (identity.access_token, identity.storage_token)
    for secret in (API_KEY, DEMO_SECRET, REGISTRY_PASSWORD, *tokens):
        assert secret not in output


def deploy_all_command(tmp_path, env):
    """`prefect-aci deploy-all` in a folder with no .env; it checks settings before building."""
    return subprocess.run(
        [sys.executable, "-m", "prefect_aci", "deploy-all"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=120,
    )


@pytest.mark.slow  # runs the command in a subprocess
def test_without_azure_settings_it_stops_at_once_and_points_to_make_demo(tmp_path):
    result = deploy_all_command(tmp_path, clean_env())
    assert result.returncode == 1, result.stderr
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("error: no Azure settings"), line
    assert "make demo" in line


@pytest.mark.slow  # runs the command in a subprocess
def test_partial_settings_name_what_is_missing_and_send_nothing(tmp_path):
    result = deploy_all_command(
        tmp_path, clean_env(AZURE_SUBSCRIPTION_ID="not-a-guid", AZURE_RESOURCE_GROUP="rg")
    )
    assert result.returncode == 1
    [line] = result.stderr.strip().splitlines()
    assert "AZURE_SUBSCRIPTION_ID must be a subscription id" in line
    assert "PREFECT_API_URL is not set" in line
