"""`prefect-aci azure deploy/destroy`: settings checked before anything is sent; the request that
azure-mgmt-resource sends, through azure-core's transport to local ACI in the test process (its
Resource Manager deploys the template; its container groups run nothing), signed in as the
deployer through local ACI's identity endpoint with a real role assignment; one-line errors.
Azure itself is never reached."""

import datetime
import json
import os
import subprocess
import sys
import uuid

import pytest
from azure.identity import ManagedIdentityCredential

from arm.deploy import (
    DEPLOYMENT_NAME,
    KEY_VAULT_API,
    LINKED_ROLE_SEED,
    STANDBY_WORKER_CONTAINER,
    SUBNET_IN_USE,
    SWEEPER_ROLE_SEED,
    WORKER_CONTAINER,
    WORKER_ROLE_SEED,
    Infra,
    Principal,
    arm_guid,
    parameters,
    principal_of,
)
from arm.settings import InfraSettings
from prefect_aci.core.errors import UserError
from prefect_aci.core.paths import PROJECT_ROOT
from prefect_aci.core.records import ImageRecord, Publication, published
from prefect_aci.core.settings import load
from prefect_aci.local_aci.app import MANAGEMENT
from prefect_aci.local_aci.authorization import READER
from prefect_aci.local_aci.groups import GroupError
from prefect_aci.local_aci.resources import IDENTITIES, ROLE_DEFINITIONS, Context
from tests.acr_stand_in import PRINCIPAL_ID, TENANT, AzureStandIn, fake_jwt
from tests.arm.conftest import TEMPLATE
from tests.local_aci.arm_helpers import DEPLOYER, GROUP_ID, FakeGroups
from tests.local_azure_helpers import Local, local_azure, start_local

SUBSCRIPTION = "0b1f6471-1bf0-4dda-aec3-cb9272f09590"
API_KEY = "pnu_never_print_this_key"
SETTINGS = {
    "AZURE_SUBSCRIPTION_ID": SUBSCRIPTION,
    "AZURE_RESOURCE_GROUP": "prefect-aci-rg",
    "PREFECT_API_URL": "https://api.prefect.cloud/api/accounts/a/workspaces/w",
    "PREFECT_API_KEY": API_KEY,
}
UNSET_AZURE = dict.fromkeys(
    (
        "AZURE_CLIENT_ID",
        "AZURE_TENANT_ID",
        "AZURE_CLIENT_SECRET",
        "AZURE_USERNAME",
        "AZURE_FEDERATED_TOKEN_FILE",
    )
)
UNPUSHED = ImageRecord(
    image_id="sha256:" + "1" * 64,
    repository="prefect-aci",
    local_tags=[],
    base_image="b",
    versions={},
)
IMAGE = published(
    UNPUSHED.model_copy(
        update={
            "published": Publication(
                registry="reg.azurecr.io",
                repository="team/prefect-aci",
                tags=["t"],
                digest="sha256:" + "2" * 64,
            )
        }
    )
)


def _signed_in(found: Local, monkeypatch) -> Local:
    for name, value in found.identity_env().items():
        monkeypatch.setenv(name, value)
    return found


@pytest.fixture
def local(tmp_path, monkeypatch):
    """Local ACI, the deployer holding Owner on the resource group."""
    found = _signed_in(start_local(tmp_path), monkeypatch)
    yield found
    found.close()


@pytest.fixture
def settings(monkeypatch):
    for name, value in SETTINGS.items():
        monkeypatch.setenv(name, value)
    return load(InfraSettings)


def _run_azure(*args, env):
    merged = {**os.environ, **env}
    return subprocess.run(
        [sys.executable, "-m", "prefect_aci", "azure", *args],
        capture_output=True,
        text=True,
        cwd=PROJECT_ROOT,
        timeout=120,
        env={k: v for k, v in merged.items() if v is not None},
    )


def error_line(result) -> str:
    [line] = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    return line


def test_deploy_sends_one_incremental_deployment_of_our_template(local, settings):
    infra = Infra.connect(settings, ManagedIdentityCredential(), transport=local.transport())
    infra.ensure_resource_group()
    record = infra.deploy(
        json.loads(TEMPLATE.read_text()), parameters(settings, IMAGE, infra.deployer)
    )
    [put] = local.of("PUT", f"/deployments/{DEPLOYMENT_NAME}")
    assert put.path == (
        f"/subscriptions/{SUBSCRIPTION}/resourcegroups/prefect-aci-rg/"
        f"providers/Microsoft.Resources/deployments/{DEPLOYMENT_NAME}"
    )
    assert put.query["api-version"]
    properties = put.json()["properties"]
    assert properties["mode"] == "Incremental"
    assert properties["template"] == json.loads(TEMPLATE.read_text())
    values = {name: p["value"] for name, p in properties["parameters"].items()}
    assert values["workerImage"] == IMAGE.reference
    assert values["prefectApiKey"] == API_KEY
    assert values["prefectApiAuthString"] == ""  # none given: the worker gets none
    assert values["prefectApiUrl"] == SETTINGS["PREFECT_API_URL"]
    assert values["deployWorker"] is True
    assert values["scheduledSweep"] is False  # no PREFECT_ACI_SWEEP_EVERY: no sweeper role
    # Who is deploying, read from the token's claims: granted upload and push by the template.
    assert values["deployerPrincipalId"] == DEPLOYER
    assert values["deployerPrincipalType"] == "ServicePrincipal"
    assert len(values["demoSecretValue"]) >= 24
    assert set(values) <= set(json.loads(TEMPLATE.read_text())["parameters"])
    # The outputs come back as the record registration reads, under the template's output names.
    [vault] = local.arm.store.by_type("Microsoft.KeyVault/vaults")
    assert record.key_vault_uri == vault.properties["vaultUri"]
    assert record.key_vault_name == vault.body["name"]
    assert record.work_pool_name == "aci-pool"
    assert set(record.outputs()) == set(json.loads(TEMPLATE.read_text())["outputs"])
    assert local.token_requests()[0].query["resource"] == MANAGEMENT


def test_without_a_standby_pool_the_deployment_makes_none_of_its_parts(local, settings):
    """PREFECT_ACI_STANDBY_POOL_SIZE unset (0): no profile, no pool, no role for the pool's
    resource provider, and empty outputs for them."""
    infra = Infra.connect(settings, ManagedIdentityCredential(), transport=local.transport())
    infra.ensure_resource_group()
    record = infra.deploy(json.loads(TEMPLATE.read_text()), parameters(settings, IMAGE))
    for standby_type in (
        "Microsoft.ContainerInstance/containerGroupProfiles",
        "Microsoft.StandbyPool/standbyContainerGroupPools",
    ):
        assert local.arm.store.by_type(standby_type) == []
    assert [
        a
        for a in local.arm.store.by_type("Microsoft.Authorization/roleAssignments")
        if "Standby Pool Resource Provider" in a.body["properties"].get("description", "")
    ] == []
    assert (record.container_group_profile_id, record.standby_pool_id) == ("", "")
    assert record.container_group_profile_revision == 0


def test_missing_resource_group_is_created_in_the_given_location(tmp_path, monkeypatch, settings):
    local = _signed_in(start_local(tmp_path, local_azure(resource_group_exists=False)), monkeypatch)
    try:
        settings = load(InfraSettings, azure_location="northeurope")
        infra = Infra.connect(settings, ManagedIdentityCredential(), transport=local.transport())
        infra.ensure_resource_group()
        group = infra.client.resource_groups.get("prefect-aci-rg")
    finally:
        local.close()
    [put] = local.of("PUT", "/resourcegroups/prefect-aci-rg")
    assert put.json()["location"] == "northeurope"
    assert group.location == "northeurope"


def test_missing_resource_group_without_location_is_a_clear_error(local, settings):
    elsewhere = load(InfraSettings, azure_resource_group="not-local-acis")
    infra = Infra.connect(elsewhere, ManagedIdentityCredential(), transport=local.transport())
    with pytest.raises(UserError, match="set AZURE_LOCATION"):
        infra.ensure_resource_group()
    assert local.of("HEAD", "/resourcegroups/not-local-acis")
    assert local.of("PUT", "/resourcegroups/") == []


def test_what_if_lists_changes_and_deploys_nothing(local, settings):
    infra = Infra.connect(settings, ManagedIdentityCredential(), transport=local.transport())
    changes = infra.what_if(json.loads(TEMPLATE.read_text()), parameters(settings, IMAGE))
    assert {kind for kind, _ in changes} == {"Create"}
    vault = f"{GROUP_ID}/providers/Microsoft.KeyVault/vaults/"
    assert [i for _, i in changes if i.startswith(vault) and "/" not in i[len(vault) :]]
    assert local.arm.store.resources == {}
    assert local.of("PUT", "/deployments/") == []
    assert local.of("POST", f"/deployments/{DEPLOYMENT_NAME}/whatIf")


def test_arm_rejection_is_one_line_with_its_code(local, settings):
    infra = Infra.connect(settings, ManagedIdentityCredential(), transport=local.transport())
    params = {**parameters(settings, IMAGE), "registrySku": {"value": "Gold"}}
    with pytest.raises(UserError) as caught:
        infra.deploy(json.loads(TEMPLATE.read_text()), params)
    message = str(caught.value)
    assert message.startswith("Azure Resource Manager said InvalidTemplate: ")
    assert "registrySku" in message and "\n" not in message
    assert local.arm.store.resources == {}


class RefusingGroups(FakeGroups):
    """Container Instances refusing every group, as for a spent core quota."""

    def create(self, resource_group: str, resource: dict):
        raise GroupError("ContainerGroupQuotaReached", "No cores left in this region.")


def test_failed_provisioning_is_reported_as_arms_error(tmp_path, monkeypatch, settings):
    local = _signed_in(start_local(tmp_path, groups=RefusingGroups([])), monkeypatch)
    try:
        infra = Infra.connect(settings, ManagedIdentityCredential(), transport=local.transport())
        with pytest.raises(UserError) as caught:
            infra.deploy(json.loads(TEMPLATE.read_text()), parameters(settings, IMAGE))
    finally:
        local.close()
    # The SDK's poller raises ARM's error for a deployment that ended Failed.
    message = str(caught.value)
    assert message.startswith("Azure Resource Manager said DeploymentFailed: ")
    assert "\n" not in message
    assert local.arm.get(settings.azure_resource_group, DEPLOYMENT_NAME).state == "Failed"


@pytest.mark.timeout(30)  # a deletion that never ends is polled for ever
def test_destroy_deletes_the_group_and_everything_in_it(local, settings):
    _worker(local, 1, 2)
    local.add_deployment(DEPLOYMENT_NAME, datetime.datetime.now(datetime.UTC))
    identity = {"type": IDENTITIES, "name": "prefect-worker-id", "location": "westeurope"}
    local.arm.store.record(identity, _context(local))
    infra = Infra.connect(settings, ManagedIdentityCredential(), transport=local.transport())
    infra.destroy()
    assert local.of("DELETE", "/resourcegroups/prefect-aci-rg")
    assert not infra.client.resource_groups.check_existence("prefect-aci-rg")
    assert local.group_names() == set()
    assert local.deployment_names() == set()
    assert local.arm.store.under(GROUP_ID) == []


def test_worker_without_a_pushed_image_is_refused(settings):
    with pytest.raises(UserError, match="needs a pushed image"):
        parameters(settings, None)
    with pytest.raises(UserError, match="make push"):
        parameters(settings, UNPUSHED)


def test_a_sweep_schedule_gives_the_job_identity_the_sweeper_role(settings):
    values = parameters(load(InfraSettings, sweep_every="15m"), IMAGE)
    assert values["scheduledSweep"] == {"value": True}


@pytest.mark.parametrize(
    ("every", "expected"),
    [("1m", "at least 5m"), ("often", "a duration like 30m"), ("15", "a duration like 30m")],
)
def test_a_sweep_schedule_that_is_too_short_or_no_duration_is_one_line(settings, every, expected):
    with pytest.raises(UserError, match=f"PREFECT_ACI_SWEEP_EVERY must be {expected}"):
        load(InfraSettings, sweep_every=every)


def test_infrastructure_without_worker_needs_no_image(settings):
    values = parameters(load(InfraSettings, deploy_worker=False), None)
    assert values["deployWorker"] == {"value": False}
    assert values["workerImage"] == {"value": ""}


@pytest.mark.slow  # runs the command in a subprocess
@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"AZURE_SUBSCRIPTION_ID": None}, "AZURE_SUBSCRIPTION_ID is not set"),
        ({"AZURE_SUBSCRIPTION_ID": "my-sub"}, "AZURE_SUBSCRIPTION_ID must be a subscription id"),
        ({"PREFECT_ACI_KEY_VAULT_NAME": "kv"}, "PREFECT_ACI_KEY_VAULT_NAME must be 3-24 letters"),
        (
            {"PREFECT_ACI_KEY_VAULT_NAME": "x" * 25},
            "PREFECT_ACI_KEY_VAULT_NAME must be 3-24 letters",
        ),
        ({"PREFECT_API_URL": None}, "PREFECT_API_URL is not set"),
        ({"PREFECT_API_URL": "api.prefect.cloud"}, "PREFECT_API_URL must be an http(s) URL"),
        ({"AZURE_RESOURCE_GROUP": "bad/group"}, "AZURE_RESOURCE_GROUP must be 1-90"),
        ({"PREFECT_ACI_PREFIX": "Prefect-ACI"}, "PREFECT_ACI_PREFIX must be 3-9 lower-case"),
        ({"PREFECT_ACI_WORKER_CPU": "lots"}, "PREFECT_ACI_WORKER_CPU must be a positive number"),
        (
            {"PREFECT_ACI_REGISTRY_SKU": "premium"},
            "PREFECT_ACI_REGISTRY_SKU must be Basic, Standard or Premium",
        ),
        (
            {"PREFECT_ACI_WORKER_MEMORY_GB": "0"},
            "PREFECT_ACI_WORKER_MEMORY_GB must be a positive number",
        ),
        (
            {"PREFECT_ACI_WORKER_MEMORY_GB": "1.25"},
            "PREFECT_ACI_WORKER_MEMORY_GB must be a multiple of 0.1",
        ),
        ({"PREFECT_ACI_WORKER_CPU": "8"}, "PREFECT_ACI_WORKER_CPU must be at most 4"),
        (
            {"PREFECT_ACI_KEY_VAULT_RETENTION_DAYS": "120"},
            "PREFECT_ACI_KEY_VAULT_RETENTION_DAYS must be a whole number of days from 7 to 90",
        ),
    ],
)
def test_bad_settings_are_caught_before_anything_is_sent(tmp_path, env, expected):
    result = _run_azure(
        "deploy",
        "--image-record",
        str(tmp_path / "none.json"),
        env={**SETTINGS, "PREFECT_ACI_DEPLOY_WORKER": "false", **env},
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert expected in error_line(result)
    assert API_KEY not in result.stderr + result.stdout


@pytest.mark.slow  # runs the command in a subprocess
def test_deploy_without_azure_credentials_says_how_to_log_in(tmp_path):
    identity = AzureStandIn(identity_available=False)
    try:
        result = _run_azure(
            "deploy",
            "--image-record",
            str(tmp_path / "none.json"),
            env={
                **SETTINGS,
                **UNSET_AZURE,
                **identity.identity_env(),
                "PREFECT_ACI_DEPLOY_WORKER": "false",
            },
        )
    finally:
        identity.close()
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    line = error_line(result)
    assert "no Azure credential" in line and "az login" in line
    assert "AZURE_CLIENT_SECRET" in line
    assert identity.token_requests, "the managed identity endpoint was never asked"


@pytest.mark.slow  # runs the command in a subprocess
def test_destroy_needs_no_prefect_setting_and_asks_for_confirmation():
    target_only = {**SETTINGS, "PREFECT_API_URL": None, "PREFECT_API_KEY": None}
    result = _run_azure("destroy", env=target_only)
    assert result.returncode == 1
    assert "--yes" in error_line(result)


def test_settings_defaults_match_the_template(settings, template):
    assert settings.prefix == template["parameters"]["prefix"]["defaultValue"]
    assert settings.work_pool_name == template["parameters"]["workPoolName"]["defaultValue"]
    assert (
        settings.enable_purge_protection
        is template["parameters"]["enablePurgeProtection"]["defaultValue"]
    )
    assert settings.worker_cpu == template["parameters"]["workerCpu"]["defaultValue"]
    assert settings.registry_sku == template["parameters"]["registrySku"]["defaultValue"]
    assert settings.worker_memory_gb == template["parameters"]["workerMemoryInGB"]["defaultValue"]
    assert settings.flow_run_cpu == template["parameters"]["flowRunCpu"]["defaultValue"]
    assert (
        settings.flow_run_memory_gb == template["parameters"]["flowRunMemoryInGB"]["defaultValue"]
    )
    assert settings.standby_pool_size == template["parameters"]["standbyPoolSize"]["defaultValue"]
    retention = template["parameters"]["softDeleteRetentionInDays"]
    assert settings.key_vault_retention_days == retention["defaultValue"]
    assert (retention["minValue"], retention["maxValue"]) == (7, 90)


@pytest.mark.parametrize(
    ("claims", "expected"),
    [
        ({"oid": PRINCIPAL_ID, "idtyp": "app"}, Principal(PRINCIPAL_ID, "ServicePrincipal")),
        ({"oid": PRINCIPAL_ID, "idtyp": "user"}, Principal(PRINCIPAL_ID, "User")),
        # No idtyp claim: delegated tokens (a person's) carry scopes, app tokens do not.
        ({"oid": PRINCIPAL_ID, "scp": "user_impersonation"}, Principal(PRINCIPAL_ID, "User")),
        ({"oid": PRINCIPAL_ID}, Principal(PRINCIPAL_ID, "ServicePrincipal")),
        ({"idtyp": "app"}, None),
        ({"oid": "not-a-guid", "idtyp": "app"}, None),
    ],
)
def test_deployer_is_read_from_the_token_claims(claims, expected):
    assert principal_of(fake_jwt({"tid": TENANT, **claims})) == expected


def test_a_token_that_is_not_a_jwt_names_no_deployer_and_grants_nothing(settings):
    assert principal_of("opaque-token") is None
    values = parameters(settings, IMAGE, None)
    assert "deployerPrincipalId" not in values


def _worker(local: Local, cpu: float, memory_gb: float) -> None:
    """The worker's container group as an earlier deployment left it."""
    local.add_group(
        "prefect-worker",
        {WORKER_CONTAINER: {"PREFECT_API_URL": SETTINGS["PREFECT_API_URL"]}},
        cpu=cpu,
        memoryInGB=memory_gb,
    )


def _index(local: Local, request) -> int:
    return next(i for i, r in enumerate(local.server.received) if r is request)


def test_worker_size_reaches_the_template(settings):
    values = parameters(load(InfraSettings, worker_cpu="0.5", worker_memory_gb="1.5"), IMAGE)
    assert values["workerCpu"] == {"value": "0.5"}
    assert values["workerMemoryInGB"] == {"value": "1.5"}


def test_a_changed_worker_size_stops_the_deploy_with_what_to_do(local, settings):
    """ACI cannot change CPU or memory of an existing group: ARM would fail half-way."""
    _worker(local, 1, 2)
    bigger = load(InfraSettings, worker_cpu="2", worker_memory_gb="4")
    infra = Infra.connect(bigger, ManagedIdentityCredential(), transport=local.transport())
    with pytest.raises(UserError) as caught:
        infra.deploy(json.loads(TEMPLATE.read_text()), parameters(bigger, IMAGE))
    assert "prefect-worker runs with 1 CPU and 2 GB" in str(caught.value)
    assert "--replace-worker" in str(caught.value)
    assert local.of("PUT", "/deployments/") == []
    assert local.of("DELETE", "/containerGroups/") == []
    assert local.group_names() == {"prefect-worker"}


def test_replace_worker_deletes_the_old_group_then_deploys(local, settings):
    _worker(local, 1, 2)
    bigger = load(InfraSettings, worker_cpu="2", worker_memory_gb="4")
    infra = Infra.connect(bigger, ManagedIdentityCredential(), transport=local.transport())
    infra.deploy(json.loads(TEMPLATE.read_text()), parameters(bigger, IMAGE), replace_worker=True)
    [delete] = local.of("DELETE", "/containerGroups/")
    assert delete.path.endswith("/containerGroups/prefect-worker")
    [put] = local.of("PUT", "/deployments/")
    assert _index(local, delete) < _index(local, put)
    # The template's worker, of the new size.
    [worker] = local.groups.created[1:]
    [container] = worker["properties"]["containers"]
    assert container["properties"]["resources"]["requests"] == {"cpu": 2.0, "memoryInGB": 4.0}


def test_replace_worker_replaces_the_standby_pools_worker_too(local, settings):
    """The standby pool's worker has the worker's size: ACI cannot change it in place either."""
    _worker(local, 1, 2)
    local.add_group(
        "prefect-standby-worker",
        {STANDBY_WORKER_CONTAINER: {"PREFECT_API_URL": SETTINGS["PREFECT_API_URL"]}},
        cpu=1,
        memoryInGB=2,
    )
    bigger = load(InfraSettings, worker_cpu="2", worker_memory_gb="4")
    infra = Infra.connect(bigger, ManagedIdentityCredential(), transport=local.transport())
    why = infra.worker_to_replace(parameters(bigger, IMAGE))
    assert "prefect-worker runs with 1 CPU" in why
    assert "prefect-standby-worker runs with 1 CPU" in why
    infra.deploy(json.loads(TEMPLATE.read_text()), parameters(bigger, IMAGE), replace_worker=True)
    deleted = {d.path.rsplit("/", 1)[1] for d in local.of("DELETE", "/containerGroups/")}
    assert deleted == {"prefect-worker", "prefect-standby-worker"}


def test_the_same_worker_size_redeploys_in_place(local, settings):
    _worker(local, 1, 2)
    same = load(InfraSettings, worker_cpu="1", worker_memory_gb="2")
    infra = Infra.connect(same, ManagedIdentityCredential(), transport=local.transport())
    infra.deploy(json.loads(TEMPLATE.read_text()), parameters(same, IMAGE))
    assert local.of("GET", "/containerGroups/prefect-worker")
    assert local.of("DELETE", "/containerGroups/") == []
    assert local.of("PUT", "/deployments/")


def _context(local: Local) -> Context:
    return Context(SUBSCRIPTION, "prefect-aci-rg", local.config.tenant_id, DEPLOYMENT_NAME)


def _role(local: Local, name: str, role_name: str) -> str:
    """A custom role assignable in the group, recorded as a deployment records one (at the
    subscription); its id."""
    role = {
        "type": ROLE_DEFINITIONS,
        "name": name,
        "properties": {
            "roleName": role_name,
            "assignableScopes": [GROUP_ID],
            "permissions": [{"actions": ["Microsoft.ContainerInstance/containerGroups/read"]}],
        },
    }
    return local.arm.store.record(role, _context(local)).id


def _worker_role_guid() -> str:
    return arm_guid(
        f"/subscriptions/{SUBSCRIPTION}/resourceGroups/prefect-aci-rg", WORKER_ROLE_SEED
    )


def test_destroy_also_deletes_the_workers_custom_role(local, settings):
    """A role definition lives in the subscription: deleting the group leaves it behind."""
    role = _worker_role_guid()
    ours = _role(local, role, "Prefect ACI worker (prefect-aci-rg, ...)")
    linked = _role(
        local,
        arm_guid(f"/subscriptions/{SUBSCRIPTION}/resourceGroups/prefect-aci-rg", LINKED_ROLE_SEED),
        "Prefect ACI worker, linked (prefect-aci-rg, ...)",
    )
    sweeper = _role(
        local,
        arm_guid(f"/subscriptions/{SUBSCRIPTION}/resourceGroups/prefect-aci-rg", SWEEPER_ROLE_SEED),
        "Prefect ACI sweeper (prefect-aci-rg, ...)",
    )
    other = _role(local, str(uuid.uuid4()), "Someone else's role")
    infra = Infra.connect(settings, ManagedIdentityCredential(), transport=local.transport())
    deleted = infra.destroy()
    assert [d.name for d in deleted] == [
        "Prefect ACI worker (prefect-aci-rg, ...)",
        "Prefect ACI worker, linked (prefect-aci-rg, ...)",
        "Prefect ACI sweeper (prefect-aci-rg, ...)",
    ]
    ours_all = (ours, linked, sweeper)
    assert all(local.arm.store.get(role_id) is not None for role_id in ours_all)
    for each in deleted:
        infra.delete_role(each)
    assert all(local.arm.store.get(role_id) is None for role_id in ours_all)
    assert local.arm.store.get(other) is not None
    [group_delete] = local.of("DELETE", "/resourcegroups/prefect-aci-rg")
    [role_delete] = local.of("DELETE", f"/roleDefinitions/{role}")
    assert _index(local, group_delete) < _index(local, role_delete)


def test_destroy_leaves_a_role_of_another_name_alone(local, settings):
    kept = _role(local, _worker_role_guid(), "Not ours")
    infra = Infra.connect(settings, ManagedIdentityCredential(), transport=local.transport())
    assert infra.destroy() == []
    assert local.of("DELETE", "/roleDefinitions/") == []
    assert local.arm.store.get(kept) is not None


@pytest.mark.parametrize(
    ("field", "value", "rule"),
    [
        ("worker_memory_gb", "1.25", "PREFECT_ACI_WORKER_MEMORY_GB must be a multiple of 0.1 (GB"),
        ("worker_memory_gb", "0.05", "PREFECT_ACI_WORKER_MEMORY_GB must be a multiple of 0.1 (GB"),
        ("worker_memory_gb", "16.5", "PREFECT_ACI_WORKER_MEMORY_GB must be at most 16 (GB"),
        ("worker_memory_gb", "32", "PREFECT_ACI_WORKER_MEMORY_GB must be at most 16 (GB"),
        ("worker_cpu", "4.5", "PREFECT_ACI_WORKER_CPU must be at most 4 (cores"),
        ("worker_cpu", "8", "PREFECT_ACI_WORKER_CPU must be at most 4 (cores"),
        ("key_vault_retention_days", "6", "PREFECT_ACI_KEY_VAULT_RETENTION_DAYS must be a whole"),
        ("key_vault_retention_days", "91", "PREFECT_ACI_KEY_VAULT_RETENTION_DAYS must be a whole"),
        ("key_vault_retention_days", "7.5", "PREFECT_ACI_KEY_VAULT_RETENTION_DAYS must be a whole"),
    ],
)
def test_sizes_and_retention_are_held_to_azures_rules_on_one_line(settings, field, value, rule):
    """ACI's per-group maxima for a Linux container group (4 CPU, 16 GB), its 0.1 GB memory
    steps, Key Vault's 7-90 days: one line naming the variable and the rule, before any call."""
    with pytest.raises(UserError) as caught:
        load(InfraSettings, **{field: value})
    message = str(caught.value)
    assert rule in message and "\n" not in message
    assert f"got {value!r}" in message


@pytest.mark.parametrize(
    ("cpu", "memory"), [("4", "16"), ("0.5", "1.5"), ("1", "0.1"), ("2.25", "3.70")]
)
def test_sizes_within_aci_rules_are_taken(settings, cpu, memory):
    values = parameters(load(InfraSettings, worker_cpu=cpu, worker_memory_gb=memory), IMAGE)
    assert (values["workerCpu"]["value"], values["workerMemoryInGB"]["value"]) == (cpu, memory)


def test_retention_reaches_the_template(settings):
    values = parameters(load(InfraSettings, key_vault_retention_days="7"), IMAGE)
    assert values["softDeleteRetentionInDays"] == {"value": 7}
    assert parameters(settings, IMAGE)["softDeleteRetentionInDays"] == {"value": 90}


def _deployed(local: Local, settings: InfraSettings) -> str:
    """Deploy the template as an earlier `prefect-aci azure deploy` did; its vault's name."""
    infra = Infra.connect(settings, ManagedIdentityCredential(), transport=local.transport())
    record = infra.deploy(json.loads(TEMPLATE.read_text()), parameters(settings, IMAGE))
    return record.key_vault_name


def _since(local: Local, method: str, contains: str, before: int) -> list:
    """The requests of ``local.of`` made after the first ``before`` requests."""
    return [r for r in local.of(method, contains) if _index(local, r) >= before]


def test_another_retention_for_the_named_vault_is_refused_before_anything_is_sent(local, settings):
    """Azure sets softDeleteRetentionInDays only when a vault is created."""
    _deployed(local, load(InfraSettings, key_vault_name="team-kv"))
    before = len(local.server.received)
    shorter = load(InfraSettings, key_vault_name="team-kv", key_vault_retention_days="7")
    infra = Infra.connect(shorter, ManagedIdentityCredential(), transport=local.transport())
    with pytest.raises(UserError) as caught:
        infra.deploy(json.loads(TEMPLATE.read_text()), parameters(shorter, IMAGE))
    message = str(caught.value)
    assert "Key Vault team-kv keeps deleted secrets 90 days" in message
    assert "set PREFECT_ACI_KEY_VAULT_RETENTION_DAYS=90" in message
    assert "PREFECT_ACI_KEY_VAULT_NAME" in message and "\n" not in message
    [read] = _since(local, "GET", "/providers/Microsoft.KeyVault/vaults/team-kv", before)
    assert read.path.endswith(
        f"/subscriptions/{SUBSCRIPTION}/resourceGroups/prefect-aci-rg"
        "/providers/Microsoft.KeyVault/vaults/team-kv"
    )
    [vault] = [
        r for r in json.loads(TEMPLATE.read_text())["resources"] if r["type"].endswith("/vaults")
    ]
    assert read.query["api-version"] == KEY_VAULT_API == vault["apiVersion"]
    assert _since(local, "PUT", "/deployments/", before) == []


def test_the_default_vault_is_found_through_the_last_deployment(local, settings):
    vault = _deployed(local, load(InfraSettings, key_vault_retention_days="30"))
    before = len(local.server.received)
    infra = Infra.connect(settings, ManagedIdentityCredential(), transport=local.transport())
    with pytest.raises(UserError, match=f"Key Vault {vault} keeps deleted secrets 30"):
        infra.deploy(json.loads(TEMPLATE.read_text()), parameters(settings, IMAGE))
    assert _since(local, "PUT", "/deployments/", before) == []


def test_the_same_retention_deploys(local, settings):
    vault = _deployed(local, settings)
    before = len(local.server.received)
    _deployed(local, settings)
    assert _since(local, "GET", f"/vaults/{vault}", before)
    assert _since(local, "PUT", "/deployments/", before)


def test_a_vault_that_does_not_exist_yet_takes_any_retention(local, settings):
    short = load(InfraSettings, key_vault_name="new-kv", key_vault_retention_days="7")
    _deployed(local, short)
    [read] = local.of("GET", "/vaults/new-kv")
    assert _index(local, read) < _index(local, local.of("PUT", "/deployments/")[0])
    [vault] = local.arm.store.by_type("Microsoft.KeyVault/vaults")
    assert vault.properties["softDeleteRetentionInDays"] == 7


def test_a_vault_the_next_deployment_will_not_touch_is_not_read(local, settings):
    """The last deployment's vault had a name of its own; unset, the name is the default, a
    vault of another name."""
    _deployed(local, load(InfraSettings, key_vault_name="team-kv", key_vault_retention_days="30"))
    before = len(local.server.received)
    _deployed(local, settings)
    assert _since(local, "GET", "/vaults/", before) == []
    assert _since(local, "PUT", "/deployments/", before)


def _subnet_in_use() -> dict:
    """The Network provider's refusal to delete a subnet ACI still holds, as
    Azure/azure-sdk-for-go#5082 and Azure/azure-rest-api-specs#17443 quote it."""
    subnet = f"{GROUP_ID}/providers/Microsoft.Network/virtualNetworks/prefect-vnet/subnets/aci"
    return {
        "code": SUBNET_IN_USE,
        "message": f"Subnet aci is in use by {subnet}/serviceAssociationLinks/acisal and cannot "
        "be deleted. In order to delete the subnet, delete all the resources within the subnet. "
        "See aka.ms/deletesubnet.",
        "details": [],
    }


def _subnet_fault(local: Local, shape: str, times: int) -> None:
    """Resource group deletions refused while ACI holds the subnet: at once (400
    InUseSubnetCannotBeDeleted), or from the group operation after a 202 (ResourceGroupDeletion
    Blocked, the subnet's error in its details: MicrosoftDocs/azure-docs#52282 shows the shape)."""
    fault = {"method": "DELETE", "path_contains": "/resourcegroups/prefect-aci-rg", "times": times}
    if shape == "subnet":
        local.inject_fault(**fault, status=400, **_subnet_in_use())
        return
    vnet = f"{GROUP_ID}/providers/Microsoft.Network/virtualNetworks/prefect-vnet"
    local.inject_fault(
        **fault,
        status=400,
        in_operation=True,
        code="ResourceGroupDeletionBlocked",
        message="Deletion of resource group 'prefect-aci-rg' failed as resources with "
        "identifiers 'Microsoft.Network/virtualNetworks/prefect-vnet' could not be deleted. "
        f"The provisioning state of the resource group will be rolled back. The tracking Id is "
        f"'{uuid.uuid4()}'. Please check audit logs for more details.",
        details=[
            {
                "code": None,
                "target": vnet,
                "message": json.dumps({"error": _subnet_in_use()}),
            }
        ],
    )


@pytest.mark.parametrize("shape", ["subnet", "blocked"])
def test_destroy_tries_again_while_aci_holds_the_subnet(local, settings, shape):
    """Azure's refusal comes at once (400 InUseSubnetCannotBeDeleted) or from the group
    operation (ResourceGroupDeletionBlocked, with the subnet's error in its details)."""
    _subnet_fault(local, shape, times=2)
    waits: list[str] = []
    infra = Infra.connect(settings, ManagedIdentityCredential(), transport=local.transport())
    infra.destroy(attempts=3, wait=0.01, notify=waits.append)
    assert len(local.of("DELETE", "/resourcegroups/prefect-aci-rg")) == 3
    assert not infra.client.resource_groups.check_existence("prefect-aci-rg")
    assert len(waits) == 2
    assert all(SUBNET_IN_USE in line and "trying again" in line for line in waits)


@pytest.mark.parametrize("shape", ["subnet", "blocked"])
def test_destroy_gives_up_after_its_attempts_with_what_to_do(local, settings, shape):
    role = _role(local, _worker_role_guid(), "Prefect ACI worker (prefect-aci-rg, ...)")
    _subnet_fault(local, shape, times=10)
    infra = Infra.connect(settings, ManagedIdentityCredential(), transport=local.transport())
    with pytest.raises(UserError) as caught:
        infra.destroy(attempts=3, wait=0.01, notify=lambda _: None)
    message = str(caught.value)
    assert "\n" not in message
    assert SUBNET_IN_USE in message and "3 attempts" in message
    assert "wait a few minutes and run make destroy CONFIRM=yes again" in message
    assert len(local.of("DELETE", "/resourcegroups/prefect-aci-rg")) == 3
    assert infra.client.resource_groups.check_existence("prefect-aci-rg")
    assert local.of("DELETE", "/roleDefinitions/") == []
    assert local.arm.store.get(role) is not None


def test_destroy_does_not_retry_other_refusals(tmp_path, monkeypatch, settings):
    """A deployer who may only read the group (Reader) is refused the deletion by Azure RBAC."""
    local = _signed_in(start_local(tmp_path, local_azure(role=READER)), monkeypatch)
    try:
        infra = Infra.connect(settings, ManagedIdentityCredential(), transport=local.transport())
        with pytest.raises(UserError, match="AuthorizationFailed"):
            infra.destroy(attempts=3, wait=0.01, notify=lambda _: pytest.fail("waited"))
    finally:
        local.close()
    assert len(local.of("DELETE", "/resourcegroups/prefect-aci-rg")) == 1
