"""Registration against a real Prefect server, and the ACI job the worker would submit, rendered by
prefect-azure's own AzureContainerJobConfiguration from the registered pool."""

import json
import os
import uuid

import pytest
from prefect import get_client
from prefect.client.schemas.actions import WorkPoolCreate
from prefect.client.schemas.objects import FlowRun
from prefect.exceptions import ObjectNotFound
from prefect.settings import PREFECT_API_KEY, PREFECT_API_URL, temporary_settings
from prefect_aci_runtime.worker import StandbyJobConfiguration
from prefect_azure import AzureBlobStorageContainer
from prefect_azure.workers.container_instance import AzureContainerJobConfiguration

from blocks.register import Report, _save_pool
from prefect_aci.core.errors import UserError
from prefect_aci.core.names import WORK_POOL_TYPE
from prefect_aci.core.records import Publication
from tests.conftest import run_cli
from tests.local_aci.arm_helpers import template_outputs

SUB = "0b1f6471-1bf0-4dda-aec3-cb9272f09590"
RG = f"/subscriptions/{SUB}/resourceGroups/prefect-aci"
JOB_ID = f"{RG}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/prefect-job-id"
SUBNET = f"{RG}/providers/Microsoft.Network/virtualNetworks/prefect-vnet/subnets/aci"
ACR = "prefectacitest.azurecr.io"
REFERENCE = f"{ACR}/prefect-aci@sha256:" + "3" * 64
SP_SECRET = "sp-secret-never-print"


def outputs(**changes) -> dict:
    """The template's outputs; a change to None leaves that output out."""
    values = template_outputs(SUB, "prefect-aci", registryLoginServer=ACR)
    values.update(changes)
    return {name: value for name, value in values.items() if value is not None}


@pytest.fixture
def records(tmp_path, built_image):
    image = tmp_path / "image.json"
    image.write_text(
        built_image.model_copy(
            update={
                "published": Publication(
                    registry=ACR, repository="prefect-aci", tags=["t"], digest="sha256:" + "3" * 64
                )
            }
        ).model_dump_json()
    )
    azure = tmp_path / "azure.json"
    azure.write_text(json.dumps(outputs()))
    return image, azure


@pytest.fixture
def pool_name() -> str:
    return f"aci-{uuid.uuid4().hex[:8]}"


def register(api, records, pool, *extra, env=None):
    image, azure = records
    merged = {
        **os.environ,
        "PREFECT_API_URL": api,
        "PREFECT_ACI_WORK_POOL_NAME": pool,
        "AZURE_TENANT_ID": "",
        "AZURE_CLIENT_ID": "",
        "AZURE_CLIENT_SECRET": "",
        **(env or {}),
    }
    return run_cli(
        "register",
        "--image-record",
        str(image),
        "--azure-record",
        str(azure),
        *extra,
        env=merged,
        timeout=180,
    )


def outcomes(result) -> dict[str, str]:
    lines = [line.split(None, 1) for line in result.stdout.splitlines() if line.strip()]
    return {what: outcome for outcome, what in lines}


def test_register_creates_everything_then_changes_nothing(prefect_server, records, pool_name):
    first = register(prefect_server, records, pool_name)
    assert first.returncode == 0, first.stderr
    assert f"work pool '{pool_name}' (azure-container-instance)" in outcomes(first)
    assert outcomes(first)[f"work pool '{pool_name}' (azure-container-instance)"] == "created"
    again = register(prefect_server, records, pool_name)
    assert again.returncode == 0, again.stderr
    assert set(outcomes(again).values()) == {"unchanged"}, again.stdout
    assert len(outcomes(again)) == 5  # two blocks, the pool, the automation, the variable
    with temporary_settings({PREFECT_API_URL: prefect_server}):
        storage = AzureBlobStorageContainer.load("prefect-aci-flow-code")
    # The endpoint ARM reported, without its trailing slash: the same URL the flow runs use.
    assert storage.credentials.account_url == "https://prefectst1.blob.core.windows.net"
    assert storage.container_name == "flow-code"


def test_dry_run_writes_nothing(prefect_server, records, pool_name):
    result = register(prefect_server, records, pool_name, "--dry-run")
    assert result.returncode == 0, result.stderr
    assert outcomes(result)[f"work pool '{pool_name}' (azure-container-instance)"] == "would-create"
    with (
        temporary_settings({PREFECT_API_URL: prefect_server}),
        get_client(sync_client=True) as client,
        pytest.raises(ObjectNotFound),
    ):
        client.read_work_pool(pool_name)


def test_rendered_aci_job_is_what_aci_needs(prefect_server, records, pool_name):
    result = register(prefect_server, records, pool_name)
    assert result.returncode == 0, result.stderr
    with temporary_settings({PREFECT_API_URL: prefect_server, PREFECT_API_KEY: "pnu_test_key"}):
        with get_client(sync_client=True) as client:
            pool = client.read_work_pool(pool_name)
        config = _render(pool.base_job_template)
        # A flow run naming another identity, subnet or resource group changes none of them.
        worker = JOB_ID.replace("job", "worker")
        overridden = _render(
            pool.base_job_template,
            {"identities": [worker], "subnet_ids": ["/other"], "resource_group_name": "other"},
        )
    assert overridden.identities == [JOB_ID] and overridden.subnet_ids == [SUBNET]
    assert overridden.resource_group_name == "prefect-aci"
    group = config.arm_template["resources"][0]
    container = group["properties"]["containers"][0]["properties"]
    assert container["image"] == REFERENCE
    assert container["command"] == [
        "/usr/bin/tini",
        "-g",
        "--",
        "/opt/prefect/entrypoint.sh",
        "prefect",
        "flow-run",
        "execute",
    ]
    assert group["identity"]["userAssignedIdentities"] == {JOB_ID: {}}
    assert group["properties"]["imageRegistryCredentials"] == [{"server": ACR, "identity": JOB_ID}]
    assert group["properties"]["subnetIds"] == [{"id": SUBNET}]
    env = {v["name"]: v for v in container["environmentVariables"]}
    assert env["AZURE_CLIENT_ID"] == {
        "name": "AZURE_CLIENT_ID",
        "value": "11111111-2222-3333-4444-555555555555",
    }
    assert env["KEY_VAULT_URL"]["value"] == "https://prefectkv1.vault.azure.net/"
    assert env["AZURE_TOKEN_CREDENTIALS"]["value"] == "ManagedIdentityCredential"
    assert env["PREFECT_API_KEY"] == {"name": "PREFECT_API_KEY", "secureValue": "pnu_test_key"}
    assert container["resources"]["requests"] == {"cpu": 1.0, "memoryInGB": 2.0}
    assert config.task_start_timeout_seconds == 600
    assert config.subscription_id.get_secret_value() == SUB
    assert config.resource_group_name == "prefect-aci"


def _render(
    base_job_template: dict,
    values: dict | None = None,
    configuration: type[AzureContainerJobConfiguration] = AzureContainerJobConfiguration,
) -> AzureContainerJobConfiguration:
    """What the worker does with a pool and a flow run's job variables (``values``): resolve the
    template (block refs through the API), then prepare it for a flow run."""
    import asyncio

    async def render():
        async with get_client() as client:
            config = await configuration.from_template_and_values(
                base_job_template, values or {}, client=client
            )
        config.prepare_for_flow_run(FlowRun(flow_id=uuid.uuid4(), name="demo-run"))
        return config

    return asyncio.run(render())


def test_pool_of_another_type_is_refused_before_anything_is_written(
    prefect_server, records, pool_name
):
    with (
        temporary_settings({PREFECT_API_URL: prefect_server}),
        get_client(sync_client=True) as client,
    ):
        client.create_work_pool(WorkPoolCreate(name=pool_name, type="process"))
    result = register(prefect_server, records, pool_name)
    assert result.returncode == 1
    assert result.stdout == ""
    [error] = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert f"work pool {pool_name} exists with type process" in error


def test_a_pool_a_worker_made_after_the_check_gets_our_template(prefect_server, pool_name):
    """deploy-all starts the workers in ACI before it registers, and `prefect worker start --pool`
    makes its pool when it is missing: between register's check (no pool) and its create, the
    pool may appear with the worker type's default template. Register then updates it."""
    ours = {"job_configuration": {"command": "ours"}, "variables": {"properties": {}}}
    report = Report(pool_name)
    with (
        temporary_settings({PREFECT_API_URL: prefect_server}),
        get_client(sync_client=True) as client,
    ):
        client.create_work_pool(WorkPoolCreate(name=pool_name, type=WORK_POOL_TYPE))
        _save_pool(pool_name, ours, None, report, dry_run=False)
        assert client.read_work_pool(pool_name).base_job_template == ours
        other = f"{pool_name}-other"
        client.create_work_pool(WorkPoolCreate(name=other, type="process"))
        with pytest.raises(UserError, match="exists with type process"):
            _save_pool(other, ours, None, report, dry_run=False)
    assert report.lines == [f"{'updated':<12} work pool {pool_name!r} ({WORK_POOL_TYPE})"]


def test_service_principal_goes_into_the_block_and_never_into_output(
    prefect_server, records, pool_name
):
    env = {
        "PREFECT_ACI_WORKER_TENANT_ID": "t",
        "PREFECT_ACI_WORKER_CLIENT_ID": "c",
        "PREFECT_ACI_WORKER_CLIENT_SECRET": SP_SECRET,
    }
    result = register(prefect_server, records, pool_name, env=env)
    assert result.returncode == 0, result.stderr
    assert SP_SECRET not in result.stdout + result.stderr
    from prefect_azure import AzureContainerInstanceCredentials

    with temporary_settings({PREFECT_API_URL: prefect_server}):
        block = AzureContainerInstanceCredentials.load("prefect-aci")
    assert block.client_secret.get_secret_value() == SP_SECRET
    register(prefect_server, records, pool_name)  # back to the managed identity for others


def test_the_principal_signed_in_here_is_never_stored_for_the_worker(
    prefect_server, records, pool_name
):
    """AZURE_* sign in whoever runs prefect-aci (the deployer, often an Owner): register never
    reads them for the worker, and refuses a worker principal that is the signed-in one."""
    deployer = {
        "AZURE_TENANT_ID": "t",
        "AZURE_CLIENT_ID": "deployer",
        "AZURE_CLIENT_SECRET": SP_SECRET,
    }
    result = register(prefect_server, records, pool_name, env=deployer)
    assert result.returncode == 0, result.stderr
    from prefect_azure import AzureContainerInstanceCredentials

    with temporary_settings({PREFECT_API_URL: prefect_server}):
        block = AzureContainerInstanceCredentials.load("prefect-aci")
    assert block.client_id is None and block.client_secret is None
    same = {
        **deployer,
        "PREFECT_ACI_WORKER_TENANT_ID": "t",
        "PREFECT_ACI_WORKER_CLIENT_ID": "DEPLOYER",
        "PREFECT_ACI_WORKER_CLIENT_SECRET": SP_SECRET,
    }
    refused = register(prefect_server, records, pool_name, env=same)
    assert refused.returncode == 1
    [error] = [line for line in refused.stderr.splitlines() if line.startswith("error:")]
    assert "is the service principal signed in here" in error
    assert SP_SECRET not in refused.stdout + refused.stderr


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"subnetId": "/subscriptions/x/subnets/aci"}, "subnetId must be a subnet resource id"),
        ({"jobIdentityId": "prefect-job-id"}, "jobIdentityId must be a user-assigned identity"),
        ({"subscriptionId": "nope"}, "subscriptionId must be a GUID"),
        ({"keyVaultUri": ""}, "keyVaultUri must be a Key Vault URI"),
        ({"keyVaultUri": None}, "keyVaultUri Field required"),
    ],
)
def test_bad_azure_outputs_are_refused(prefect_server, records, pool_name, change, expected):
    records[1].write_text(json.dumps(outputs(**change)))
    result = register(prefect_server, records, pool_name)
    assert result.returncode == 1
    [error] = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert expected in error and "make deploy-infra" in error
    assert result.stdout == ""


def test_unpushed_image_is_refused(prefect_server, records, pool_name, built_image):
    records[0].write_text(built_image.model_dump_json())
    result = register(prefect_server, records, pool_name)
    assert result.returncode == 1
    assert "not pushed; push it first (make push REGISTRY=" in result.stderr


def test_half_a_service_principal_is_refused(prefect_server, records, pool_name):
    result = register(prefect_server, records, pool_name, env={"PREFECT_ACI_WORKER_CLIENT_ID": "c"})
    assert result.returncode == 1
    assert "set all of PREFECT_ACI_WORKER_TENANT_ID" in result.stderr


def test_register_refuses_a_plain_http_prefect_api_off_loopback(records, pool_name):
    """The key or auth string would cross the network in clear: one line, nothing written."""
    result = register("http://10.0.0.4:4200/api", records, pool_name)
    assert result.returncode != 0
    assert "PREFECT_API_URL must be https://" in result.stderr, result.stderr
    assert "PREFECT_ACI_ALLOW_HTTP_API_URL=true" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_sweep_schedule_adds_the_sweeps_code_block_and_deployment(
    prefect_server, records, pool_name
):
    """Dry run: what register would add for PREFECT_ACI_SWEEP_EVERY (the deployment itself is
    made from the uploaded code on the demo stack: tests/demo/test_scheduled_sweep.py)."""
    result = register(
        prefect_server, records, pool_name, "--dry-run", env={"PREFECT_ACI_SWEEP_EVERY": "15m"}
    )
    assert result.returncode == 0, result.stderr
    done = outcomes(result)
    assert done["AzureBlobStorageContainer block 'prefect-aci-sweep-code'"] == "would-create"
    assert done["deployment 'prefect-aci-sweep/scheduled' (every 15m)"] == "would-create"
    without = outcomes(register(prefect_server, records, pool_name, "--dry-run"))
    assert not [what for what in without if "sweep" in what]


@pytest.mark.parametrize(
    ("every", "expected"), [("2m", "at least 5m"), ("hourly", "a duration like 30m")]
)
def test_a_bad_sweep_schedule_is_one_line(prefect_server, records, pool_name, every, expected):
    result = register(prefect_server, records, pool_name, env={"PREFECT_ACI_SWEEP_EVERY": every})
    assert result.returncode != 0
    assert result.stderr.startswith("error: PREFECT_ACI_SWEEP_EVERY must be"), result.stderr
    assert expected in result.stderr and len(result.stderr.strip().splitlines()) == 1


PROFILE = f"{RG}/providers/Microsoft.ContainerInstance/containerGroupProfiles/prefect-flow-run"
STANDBY = f"{RG}/providers/Microsoft.StandbyPool/standbyContainerGroupPools/prefect-standby"


def test_a_standby_pool_gets_a_work_pool_of_the_claiming_type_whose_runs_claim_from_it(
    prefect_server, records, pool_name
):
    """With the template's standby pool, register adds `<pool>-standby` (the claiming worker's
    type, the same defaults), and its automation; a run's group is a claim on the recorded pool
    and profile, which no deployment or run can point elsewhere. Again: nothing changes."""
    azure = records[1]
    standby = f"{pool_name}-standby"
    azure.write_text(
        json.dumps(
            outputs(
                containerGroupProfileId=PROFILE,
                containerGroupProfileRevision=3,
                standbyPoolId=STANDBY,
                standbyWorkPoolName=standby,
            )
        )
    )
    first = register(prefect_server, records, pool_name)
    assert first.returncode == 0, first.stderr
    done = outcomes(first)
    assert done[f"work pool '{standby}' (azure-container-instance-standby)"] == "created"
    assert done[f"automation 'prefect-aci: crash runs of {standby} without heartbeats'"] == (
        "created"
    )
    again = register(prefect_server, records, pool_name)
    assert set(outcomes(again).values()) == {"unchanged"} and len(outcomes(again)) == 7

    with temporary_settings({PREFECT_API_URL: prefect_server, PREFECT_API_KEY: "pnu_test_key"}):
        with get_client(sync_client=True) as client:
            pool = client.read_work_pool(standby)
        assert pool.type == "azure-container-instance-standby"
        elsewhere = {"standby_pool_id": "/other", "container_group_profile_id": "/other"}
        config = _render(pool.base_job_template, elsewhere, StandbyJobConfiguration)
    [group] = config.arm_template["resources"]
    assert group["properties"]["containerGroupProfile"] == {"id": PROFILE, "revision": 3}
    assert group["properties"]["standbyPoolProfile"] == {"id": STANDBY}
    assert group["identity"]["userAssignedIdentities"] == {JOB_ID: {}}
    [container] = group["properties"]["containers"]
    pairs = container["properties"]["configMap"]["keyValuePairs"]
    assert pairs["KEY_VAULT_URL"] == "https://prefectkv1.vault.azure.net/"
    assert "PREFECT_API_KEY" not in pairs


def test_a_standby_work_pool_without_a_standby_pool_is_not_made(prefect_server, records, pool_name):
    result = register(prefect_server, records, pool_name, "--dry-run")
    assert not [what for what in outcomes(result) if "standby" in what]
