"""The standby worker type: the claim it renders from the pool's template, and Prefect finding
the type through the wheel's entry point."""

import asyncio
import json
import subprocess
import sys
import uuid
import zipfile

import pytest
from prefect import get_client
from prefect.client.schemas.objects import FlowRun
from prefect.settings import PREFECT_API_KEY, PREFECT_API_URL, temporary_settings
from prefect_aci_runtime.worker import AzureContainerStandbyWorker, StandbyJobConfiguration
from prefect_azure import AzureContainerInstanceCredentials

from blocks.work_pool import base_job_template
from image_builder.wheel import runtime_wheel
from prefect_aci.core.paths import PROJECT_ROOT
from prefect_aci.core.records import AzureRecord

SUB = "0b1f6471-1bf0-4dda-aec3-cb9272f09590"
RG = f"/subscriptions/{SUB}/resourceGroups/prefect-aci"
JOB_ID = f"{RG}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/prefect-job-id"
SUBNET = f"{RG}/providers/Microsoft.Network/virtualNetworks/prefect-vnet/subnets/aci"
POOL = f"{RG}/providers/Microsoft.StandbyPool/standbyContainerGroupPools/prefect-standby"
PROFILE = f"{RG}/providers/Microsoft.ContainerInstance/containerGroupProfiles/prefect-job"
API_KEY = "pnu_standby_key_never_in_a_config_map"
AUTH_STRING = "admin:standby-auth-never-in-a-config-map"
STANDBY = {
    "standby_pool_id": POOL,
    "container_group_profile_id": PROFILE,
    "container_group_profile_revision": 3,
    "fail_on_reuse_failure": False,
}
# What a claim may carry besides the references and the config map (Azure refuses the rest).
CLAIM_GROUP_KEYS = {
    "type",
    "apiVersion",
    "name",
    "location",
    "identity",
    "tags",
    "dependsOn",
    "properties",
}


def standby_template(credentials_block_id: str, standby: dict) -> dict:
    """The pool's base job template (blocks/work_pool.py) with the standby worker's variables
    added, their values fixed in the job configuration as the pool's other Azure ids are."""
    azure = AzureRecord(
        subscriptionId=SUB,
        resourceGroupName="prefect-aci",
        keyVaultUri="https://prefectkv1.vault.azure.net/",
        jobIdentityId=JOB_ID,
        jobIdentityClientId="11111111-2222-3333-4444-555555555555",
        subnetId=SUBNET,
        storageAccountName="prefectaci",
        flowCodeContainerName="flows",
        workPoolName="aci-standby",
    )
    reference = "prefectacitest.azurecr.io/prefect-aci@sha256:" + "3" * 64
    template = base_job_template(azure, reference, credentials_block_id, None)
    template["job_configuration"].update(standby)
    return template


def render(api: str, standby: dict, values: dict | None = None) -> StandbyJobConfiguration:
    """What the standby worker does with the pool and a flow run: prefect-azure's own
    from_template_and_values (block refs through the API), then prepare_for_flow_run."""

    async def go() -> StandbyJobConfiguration:
        async with get_client() as client:
            block_id = await AzureContainerInstanceCredentials().save(
                f"standby-{uuid.uuid4().hex[:8]}", client=client
            )
            config = await StandbyJobConfiguration.from_template_and_values(
                standby_template(str(block_id), standby), values or {}, client=client
            )
        config.prepare_for_flow_run(FlowRun(flow_id=uuid.uuid4(), name="warm-run"))
        return config

    settings = {PREFECT_API_URL: api, PREFECT_API_KEY: API_KEY}
    with temporary_settings(settings):
        return asyncio.run(go())


def the_group(config: StandbyJobConfiguration) -> dict:
    (group,) = [
        r
        for r in config.arm_template["resources"]
        if r["type"] == "Microsoft.ContainerInstance/containerGroups"
    ]
    return group


def test_claim_has_the_shape_azure_accepts(prefect_process_server):
    config = render(prefect_process_server, STANDBY, {"env": {"RUN_LABEL": "nightly"}})
    group = the_group(config)
    assert set(group) <= CLAIM_GROUP_KEYS
    assert group["apiVersion"] == "2025-09-01"
    assert group["identity"]["userAssignedIdentities"] == {JOB_ID: {}}
    properties = group["properties"]
    assert set(properties) == {"containerGroupProfile", "standbyPoolProfile", "containers"}
    assert properties["containerGroupProfile"] == {"id": PROFILE, "revision": 3}
    assert properties["standbyPoolProfile"] == {
        "id": POOL,
        "failContainerGroupCreateOnReuseFailure": False,
    }
    (container,) = properties["containers"]
    assert container["name"] == "prefect-job"
    assert list(container["properties"]) == ["configMap"]
    pairs = container["properties"]["configMap"]["keyValuePairs"]
    assert uuid.UUID(pairs["PREFECT__FLOW_RUN_ID"])
    assert pairs["PREFECT_API_URL"] == prefect_process_server
    assert pairs["RUN_LABEL"] == "nightly"
    assert pairs["AZURE_CLIENT_ID"] == "11111111-2222-3333-4444-555555555555"
    assert all(isinstance(value, str) for value in pairs.values())


def test_no_secret_lands_in_the_config_map(prefect_process_server):
    # The auth string is the other secure value prefect-azure knows; the pool's env may add one.
    with temporary_settings({"PREFECT_API_AUTH_STRING": AUTH_STRING}):  # type: ignore[dict-item]
        config = render(prefect_process_server, STANDBY)
    # prefect-azure gave the run both secrets (as secure values); the claim passes neither on.
    assert config.env["PREFECT_API_KEY"] == API_KEY
    assert config.env["PREFECT_API_AUTH_STRING"] == AUTH_STRING
    pairs = the_group(config)["properties"]["containers"][0]["properties"]["configMap"]
    text = json.dumps(pairs)
    assert "PREFECT_API_KEY" not in text and API_KEY not in text
    assert "PREFECT_API_AUTH_STRING" not in text and AUTH_STRING not in text
    assert API_KEY not in json.dumps(config.arm_template)


def test_without_a_standby_pool_the_request_is_prefect_azures_own(prefect_process_server):
    group = the_group(render(prefect_process_server, {}))
    container = group["properties"]["containers"][0]["properties"]
    assert "image" in container and "environmentVariables" in container
    assert "standbyPoolProfile" not in group["properties"]


def test_a_pool_without_a_profile_is_refused_with_what_to_set(prefect_process_server):
    with pytest.raises(ValueError, match="container_group_profile_id"):
        render(prefect_process_server, {"standby_pool_id": POOL})


def test_standby_variables_default_to_none():
    properties = AzureContainerStandbyWorker.get_default_base_job_template()["variables"][
        "properties"
    ]
    for name in STANDBY:
        assert properties[name].get("default") is None
        assert f"{{{{ {name} }}}}" in json.dumps(
            AzureContainerStandbyWorker.get_default_base_job_template()["job_configuration"]
        )


def test_prefect_finds_the_worker_type_through_the_wheels_entry_point(tmp_path):
    name, wheel = runtime_wheel(PROJECT_ROOT / "runtime")
    (tmp_path / name).write_bytes(wheel)
    with zipfile.ZipFile(tmp_path / name) as archive:
        archive.extractall(tmp_path / "site")
    probe = (
        "from prefect.workers.base import BaseWorker\n"
        "cls = BaseWorker.get_worker_class_from_type('azure-container-instance-standby')\n"
        "print(cls.__module__, cls.__name__)\n"
    )
    # Only the unpacked wheel on the path: the entry point, not this checkout, finds the type.
    result = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(tmp_path / "site"), "PATH": "/usr/bin:/bin"},
        cwd=tmp_path,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split() == ["prefect_aci_runtime.worker", "AzureContainerStandbyWorker"]


def test_the_wheel_is_the_same_bytes_from_the_same_sources():
    assert runtime_wheel(PROJECT_ROOT / "runtime") == runtime_wheel(PROJECT_ROOT / "runtime")
