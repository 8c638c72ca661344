"""A flow run in the built (trimmed) image, started the way ACI starts it (tini, entrypoint.sh,
`prefect flow-run execute`): its code pulled from Blob storage by the deployment's pull step as a
managed identity (Azurite over HTTPS with OAuth), its secret read from Key Vault at the vault's
Azure host name (local ACI's, behind a proxy) as the job identity, which holds Key Vault Secrets
User on the vault and signs in through local ACI's identity endpoint, against a Prefect server
from the image. And what a failing EXTRA_PIP_PACKAGES leaves in the flow run's logs and state."""

import time
import uuid

import pytest
from prefect import get_client
from prefect.client.schemas.actions import WorkPoolCreate
from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
from prefect.settings import PREFECT_API_URL, temporary_settings

from prefect_aci.local_aci.authorization import KEY_VAULT_SECRETS_USER
from prefect_aci.local_aci.tls import make_tls
from tests.local_azure_helpers import start_local
from tests.stand_ins import AzureHostsProxy

VAULT_NAME = "prefectacitest"
VAULT_HOST = f"{VAULT_NAME}.vault.azure.net"
VAULT = f"https://{VAULT_HOST}"
VAULT_AUDIENCE = "https://vault.azure.net"
SECRET = "kv-s3cret-from-the-image-never-logged"
CA_IN_CONTAINER = "/etc/prefect-aci/ca.pem"
ACI_ENTRYPOINT = ["/usr/bin/tini"]
ACI_COMMAND = ["-g", "--", "/opt/prefect/entrypoint.sh", "prefect", "flow-run", "execute"]


@pytest.fixture(scope="module")
def azure(tmp_path_factory):
    """Azurite (HTTPS, OAuth); local ACI (HTTPS) with a deployed vault and a job identity that
    holds Key Vault Secrets User on it, whose identity endpoint gives the job identity's tokens;
    a proxy to the vault's host name; one certificate good for 127.0.0.1 and that name."""
    import subprocess

    from image_builder.local_registry import free_port, wait_for_port
    from prefect_aci.demo import azurite
    from prefect_aci.demo.stack import NODE_PREFIX

    folder = tmp_path_factory.mktemp("azure")
    folder.chmod(0o755)
    tls = make_tls(folder / "tls", names=(VAULT_HOST,))
    (folder / "tls").chmod(0o755)
    tls.bundle.chmod(0o644)
    port = free_port()
    with (folder / "azurite.log").open("ab") as log:
        process = subprocess.Popen(
            azurite.command(
                azurite.install(NODE_PREFIX),
                port,
                folder / "data",
                tls=(tls.certificate, tls.key),
            ),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    local = start_local(folder / "local-aci", tls=tls)
    vault = local.add_vault(VAULT_NAME, {"prefect-aci-demo-secret": SECRET})
    job = local.add_identity("prefect-job-id")
    local.add_role_assignment(job.principal_id, KEY_VAULT_SECRETS_USER, vault.id)
    proxy = AzureHostsProxy({f"{VAULT_HOST}:443": ("127.0.0.1", local.server.port)})
    try:
        wait_for_port(port, timeout=60)
        yield {
            "account": f"https://127.0.0.1:{port}/{azurite.ACCOUNT}",
            "admin_key": (azurite.ACCOUNT, azurite.ACCOUNT_KEY),
            "tls": tls,
            "local": local,
            "job": job,
            "proxy": proxy,
        }
    finally:
        for stand_in in (local, proxy):
            stand_in.close()
        process.kill()
        process.wait(10)


@pytest.fixture(scope="module")
def deployment(prefect_server, azure):
    """The demo flow's code in a blob container and a deployment whose pull step takes it from
    there (pull_with_block, what Flow.from_source(<block>).deploy() writes), created through the
    API: the host never reads the code, so nothing here depends on the host trusting Azurite."""
    from azure.storage.blob import BlobServiceClient
    from prefect.variables import Variable
    from prefect_azure import AzureBlobStorageContainer, AzureBlobStorageCredentials
    from prefect_azure.workers.container_instance import AzureContainerWorker

    from flows.deployment import upload_flow_code
    from prefect_aci.core.names import FLOW_ENTRYPOINT, FLOW_NAME

    name, key = azure["admin_key"]
    admin = BlobServiceClient(
        azure["account"],
        credential={"account_name": name, "account_key": key},
        connection_verify=str(azure["tls"].bundle),
    )
    container = f"flow-code-{uuid.uuid4().hex[:8]}"
    upload_flow_code(admin.create_container(container), echo=lambda _: None)
    pool = f"aci-{uuid.uuid4().hex[:8]}"
    block = f"code-{uuid.uuid4().hex[:8]}"
    with temporary_settings({PREFECT_API_URL: prefect_server}):
        credentials = AzureBlobStorageCredentials(account_url=azure["account"])
        AzureBlobStorageContainer(container_name=container, credentials=credentials).save(block)
        with get_client(sync_client=True) as client:
            client.create_work_pool(
                WorkPoolCreate(
                    name=pool,
                    type="azure-container-instance",
                    base_job_template=AzureContainerWorker.get_default_base_job_template(),
                )
            )
            flow_id = client.create_flow_from_name(FLOW_NAME)
            pull = {
                "prefect.deployments.steps.pull_with_block": {
                    "block_document_name": block,
                    "block_type_slug": "azure-blob-storage-container",
                }
            }
            deployment_id = client.create_deployment(
                flow_id=flow_id,
                name="image-test",
                entrypoint=FLOW_ENTRYPOINT,
                work_pool_name=pool,
                pull_steps=[pull],
            )
        Variable.set("key_vault_url", f"{VAULT}/", overwrite=True)
    yield deployment_id
    with temporary_settings({PREFECT_API_URL: prefect_server}):
        Variable.unset("key_vault_url")


def new_flow_run(api: str, deployment_id) -> uuid.UUID:
    with temporary_settings({PREFECT_API_URL: api}), get_client(sync_client=True) as client:
        job = {"resource_group_name": "rg", "subscription_id": str(uuid.uuid4())}
        return client.create_flow_run_from_deployment(deployment_id, job_variables=job).id


def run_logs(api: str, flow_run_id: uuid.UUID, last: str) -> list[str]:
    """The run's log messages as the API holds them (they arrive in batches: wait for ``last``)."""
    deadline = time.monotonic() + 30
    with temporary_settings({PREFECT_API_URL: api}), get_client(sync_client=True) as client:
        while True:
            logs = client.read_logs(
                log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id]))
            )
            messages = [log.message for log in logs]
            if any(last in m for m in messages) or time.monotonic() > deadline:
                return messages
            time.sleep(0.5)


def run_like_aci(docker_client, image, environment, trace, **kwargs):
    traced = trace.container_kwargs(environment)
    container = docker_client.containers.run(
        image,
        ACI_COMMAND,
        entrypoint=ACI_ENTRYPOINT,
        network_mode="host",
        detach=True,
        environment=traced["environment"],
        volumes={**traced["volumes"], **kwargs.pop("volumes", {})},
        **kwargs,
    )
    try:
        code = container.wait(timeout=300)["StatusCode"]
        return code, container.logs().decode()
    finally:
        container.remove(force=True)


def test_flow_run_pulls_from_blob_and_reads_key_vault_in_the_trimmed_image(
    docker_client, image, prefect_server, azure, deployment, trace
):
    flow_run_id = new_flow_run(prefect_server, deployment)
    local, job = azure["local"], azure["job"]
    environment = {
        "PREFECT_API_URL": prefect_server,
        "PREFECT__FLOW_RUN_ID": str(flow_run_id),
        "AZURE_CLIENT_ID": job.client_id,
        "REQUESTS_CA_BUNDLE": CA_IN_CONTAINER,
        "SSL_CERT_FILE": CA_IN_CONTAINER,
        **local.identity_env(),
        **azure["proxy"].env(),
    }
    volumes = {str(azure["tls"].bundle): {"bind": CA_IN_CONTAINER, "mode": "ro"}}
    code, output = run_like_aci(docker_client, image, environment, trace, volumes=volumes)
    assert code == 0, output[-3000:]
    assert "Deployment step 'pull_with_block' completed successfully" in output
    with temporary_settings({PREFECT_API_URL: prefect_server}), get_client(sync_client=True) as c:
        assert c.read_flow_run(flow_run_id).state.is_completed()
    logs = run_logs(prefect_server, flow_run_id, "Finished in state")
    assert "Process 1 of this container is /usr/bin/tini" in logs
    assert any(f"from Key Vault {VAULT}/ as {job.client_id}" in line for line in logs)
    assert any(f"prefect-aci-demo-secret: {len(SECRET)} characters" in line for line in logs)
    assert not [line for line in [*logs, output] if SECRET in line]
    # Key Vault took the job identity's token (the challenge met first), through the proxy.
    vault_requests = local.at_host(VAULT_HOST)
    assert vault_requests[0].headers.get("Authorization") is None
    token = vault_requests[-1].headers["Authorization"].removeprefix("Bearer ")
    claims = local.issuer.verify(token, VAULT_AUDIENCE)
    assert claims is not None
    assert (claims["appid"], claims["oid"]) == (job.client_id, job.principal_id)
    assert {r.path for r in azure["proxy"].received} == {f"{VAULT_HOST}:443"}
    # The bytecode trim kept what this run imports: nothing of site-packages compiled at start.
    assert trace.loaded_modules() >= {"prefect.flow_engine", "azure.keyvault.secrets"}
    assert trace.compiled_modules() == set()


def test_failed_extra_pip_packages_reach_the_flow_runs_logs_and_state(
    docker_client, image, prefect_server, deployment, host_ca_bundle, trace
):
    flow_run_id = new_flow_run(prefect_server, deployment)
    requirement = "https://builder:s3cr3t-t0ken@127.0.0.1:9/pkg.tar.gz"
    environment = {
        "PREFECT_API_URL": prefect_server,
        "PREFECT__FLOW_RUN_ID": str(flow_run_id),
        "EXTRA_PIP_PACKAGES": f"prefect-aci-no-such-package-xq7==0.0.1 {requirement}",
        "PIP_CERT": CA_IN_CONTAINER,
    }
    volumes = {str(host_ca_bundle): {"bind": CA_IN_CONTAINER, "mode": "ro"}}
    code, output = run_like_aci(docker_client, image, environment, trace, volumes=volumes)
    assert code == 1
    assert "Beginning flow run" not in output
    logs = run_logs(prefect_server, flow_run_id, "could not install EXTRA_PIP_PACKAGES")
    [line] = [m for m in logs if "could not install EXTRA_PIP_PACKAGES" in m]
    assert "prefect-aci-no-such-package-xq7==0.0.1" in line
    assert "https://***@127.0.0.1:9/pkg.tar.gz" in line
    assert "s3cr3t-t0ken" not in output + "\n".join(logs)
    with temporary_settings({PREFECT_API_URL: prefect_server}), get_client(sync_client=True) as c:
        state = c.read_flow_run(flow_run_id).state
    assert state.is_crashed()
    assert "could not install EXTRA_PIP_PACKAGES" in state.message
    assert "s3cr3t-t0ken" not in state.message
