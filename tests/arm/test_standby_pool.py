"""The optional ACI standby pool in arm/azuredeploy.json (issue 20, the Azure side): off by
default, refused without its resource provider's principal, and shaped as the image, the claim
and Microsoft's "configure role permissions for standby pools" page need."""

import copy
import json

import pytest

from arm.deploy import parameters
from arm.settings import MAX_STANDBY_POOL_SIZE, PROVIDER_PRINCIPAL_HINT, InfraSettings
from arm.validation import validate_template
from blocks.work_pool import CPU, MEMORY_GB
from prefect_aci.core.arm_template import template_calls
from prefect_aci.core.errors import UserError
from prefect_aci.core.names import STANDBY_WORK_POOL_TYPE
from prefect_aci.core.records import AzureRecord
from prefect_aci.core.settings import load
from prefect_aci.local_aci.expressions import Scope, TemplateError, evaluate
from tests.arm.conftest import resources_of

PROFILES = "Microsoft.ContainerInstance/containerGroupProfiles"
POOLS = "Microsoft.StandbyPool/standbyContainerGroupPools"
GROUPS = "Microsoft.ContainerInstance/containerGroups"
ASSIGNMENTS = "Microsoft.Authorization/roleAssignments"
PROVIDER = "11111111-2222-3333-4444-555555555555"
# The container the image helper and the claim address by name (the config map's path is
# /mnt/configmap/<container>/<key>).
JOB_CONTAINER = "prefect-job"
WAITING_COMMAND = [
    "/usr/bin/tini",
    "-g",
    "--",
    "/opt/prefect/entrypoint.sh",
    "python",
    "-m",
    "prefect_aci_runtime.warm",
]
# Built-in roles Microsoft suggests for the Standby Pool Resource Provider (Learn, "Configure role
# permissions for standby pools"; the pool contributor's id from the 2024 preview page's list as
# Pulumi and Microsoft's Bicep samples give it).
PROVIDER_ROLES = {
    "5d977122-f97e-4b4d-a52f-6b43003ddb4d": "Azure Container Instances Contributor",
    "4d97b98b-1d4f-4787-a291-c67834d212e7": "Network Contributor",
    "e40ec5ca-96e0-45a2-b4ff-59039f2c2b59": "Managed Identity Contributor",
    "39fcb0de-8844-4706-b050-c28ddbe3ff83": "Standby Container Group Pool Contributor",
}
ACR_PULL = "7f951dda-4ed3-4680-a7ca-43fe172d538d"
SUBSCRIPTION = "00000000-0000-0000-0000-000000000001"
GROUP_ID = f"/subscriptions/{SUBSCRIPTION}/resourceGroups/rg"
JOB_IDENTITY = (
    f"{GROUP_ID}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/prefect-job-id"
)
VAULT = f"{GROUP_ID}/providers/Microsoft.KeyVault/vaults/vault"
PROFILE_ID = (
    f"{GROUP_ID}/providers/Microsoft.ContainerInstance/containerGroupProfiles/prefect-flow-run"
)


def evaluated(template: dict, value, **given):
    """``value`` as ARM evaluates it for the parameters ``given``, with the job identity's
    clientId "job-client-id", the vault's URI and the profile's revision 4."""
    parameters = {"prefectApiUrl": "https://api.example/api", "workerImage": "img", **given}
    references = {
        JOB_IDENTITY.lower(): {"clientId": "job-client-id"},
        VAULT.lower(): {"vaultUri": "https://vault.vault.azure.net/"},
        PROFILE_ID.lower(): {"revision": 4},
    }
    scope = Scope(SUBSCRIPTION, "rg", "westeurope", "d", template, parameters, references)
    return evaluate(value, scope)


def the(template: dict, resource_type: str) -> dict:
    [resource] = resources_of(template, resource_type)
    return resource


def provider_assignments(template: dict) -> list[dict]:
    return [
        a
        for a in resources_of(template, ASSIGNMENTS)
        if a["properties"]["principalId"] == "[parameters('standbyPoolProviderPrincipalId')]"
    ]


def standby_worker(template: dict) -> dict:
    [worker] = [
        group
        for group in resources_of(template, GROUPS)
        if group["name"] == "[variables('standbyWorkerGroupName')]"
    ]
    return worker


def standby_resources(template: dict) -> list[dict]:
    return [
        the(template, PROFILES),
        the(template, POOLS),
        *provider_assignments(template),
        standby_worker(template),
    ]


def deployed(template: dict, **given) -> list[str]:
    """The types of the resources whose condition holds for the parameters ``given``."""
    return [
        r["type"]
        for r in template["resources"]
        if "condition" not in r
        or evaluated(template, r["condition"], keyVaultName="vault", **given)
    ]


def test_the_pool_is_off_by_default_and_bounded_as_azure_bounds_it(template):
    size = template["parameters"]["standbyPoolSize"]
    assert (size["type"], size["defaultValue"]) == ("int", 0)
    assert (size["minValue"], size["maxValue"]) == (0, MAX_STANDBY_POOL_SIZE) == (0, 2000)
    principal = template["parameters"]["standbyPoolProviderPrincipalId"]
    assert (principal["type"], principal["defaultValue"]) == ("string", "")
    assert (
        "az ad sp list --display-name 'Standby Pool Resource Provider'"
        in (principal["metadata"]["description"])
    )


def test_size_zero_deploys_exactly_what_it_did_before(template):
    """Existing users get no new resource: only the conditions differ, and they are false."""
    everything = [r["type"] for r in template["resources"]]
    before = [r for r in everything if r not in (PROFILES, POOLS)]
    assert len(before) == len(everything) - 2
    assert PROFILES not in deployed(template) and POOLS not in deployed(template)
    assert len(deployed(template)) == len(deployed(template, standbyPoolSize=0)) > 0
    with_pool = deployed(template, standbyPoolSize=3, standbyPoolProviderPrincipalId=PROVIDER)
    assert sorted(set(with_pool) - set(deployed(template))) == sorted([PROFILES, POOLS])
    # The profile, the pool, the provider's roles, its AcrPull and the standby pool's worker.
    assert len(with_pool) - len(deployed(template)) == 2 + len(PROVIDER_ROLES) + 1 + 1


def test_every_standby_resource_is_deployed_only_with_a_pool(template):
    for resource in standby_resources(template):
        assert "variables('standbyPool')" in resource["condition"], resource["type"]


def test_a_pool_without_its_providers_principal_fails_before_anything_is_made(template):
    with pytest.raises(TemplateError) as caught:
        evaluated(template, "[variables('standbyPool')]", standbyPoolSize=2)
    assert "standbyPoolProviderPrincipalId is required" in str(caught.value)
    assert evaluated(template, "[variables('standbyPool')]") is False
    assert (
        evaluated(
            template,
            "[variables('standbyPool')]",
            standbyPoolSize=2,
            standbyPoolProviderPrincipalId=PROVIDER,
        )
        is True
    )


def test_names_are_the_prefix_and_fit_azures_patterns(template):
    assert (
        template["variables"]["flowRunProfileName"]
        == "[format('{0}-flow-run', parameters('prefix'))]"
    )
    assert (
        template["variables"]["standbyPoolName"] == "[format('{0}-standby', parameters('prefix'))]"
    )
    assert the(template, PROFILES)["name"] == "[variables('flowRunProfileName')]"
    assert the(template, POOLS)["name"] == "[variables('standbyPoolName')]"
    assert evaluated(template, "[variables('standbyPoolName')]", prefix="abcdefghi") == (
        "abcdefghi-standby"
    )


def _container(template: dict) -> dict:
    [container] = the(template, PROFILES)["properties"]["containers"]
    return container


def test_the_profile_has_one_container_of_the_contract_name_waiting_under_tini(template):
    container = _container(template)
    assert container["name"] == JOB_CONTAINER
    properties = container["properties"]
    assert evaluated(template, properties["command"]) == WAITING_COMMAND
    assert properties["image"] == "[parameters('workerImage')]"


def test_the_profile_runs_once_on_linux_with_no_identity_and_no_subnet(template):
    """A profile has neither in its schema: the pool names the subnet, a claim the identity."""
    profile = the(template, PROFILES)
    assert profile["properties"]["restartPolicy"] == "Never"
    assert profile["properties"]["osType"] == "Linux"
    assert "identity" not in profile
    assert "subnetIds" not in profile["properties"]


def test_the_profile_pulls_by_the_job_identity(template):
    credentials = the(template, PROFILES)["properties"]["imageRegistryCredentials"]
    assert "'identity'" in credentials and "variables('jobIdentityName')" in credentials
    assert "'password'" not in credentials and "'username'" not in credentials


def test_the_flow_run_size_is_the_work_pools_default(template):
    resources = _container(template)["properties"]["resources"]["requests"]
    assert evaluated(template, resources["cpu"]) == CPU
    assert evaluated(template, resources["memoryInGB"]) == MEMORY_GB
    assert evaluated(template, resources["cpu"], flowRunCpu="0.5") == 0.5


def _environment(template: dict, **given) -> dict[str, dict]:
    env = _container(template)["properties"]["environmentVariables"]
    return {v["name"]: v for v in evaluated(template, env, keyVaultName="vault", **given)}


def test_the_profile_has_the_pools_plain_env_for_flow_runs(template):
    env = _environment(template)
    assert {name: v.get("value") for name, v in env.items()} == {
        "PREFECT_API_URL": "https://api.example/api",
        "AZURE_CLIENT_ID": "job-client-id",
        "AZURE_TOKEN_CREDENTIALS": "ManagedIdentityCredential",
        "KEY_VAULT_URL": "https://vault.vault.azure.net/",
        "PREFECT_FLOWS_HEARTBEAT_FREQUENCY": "60",
    }


@pytest.mark.parametrize(
    ("parameter", "name"),
    [("prefectApiKey", "PREFECT_API_KEY"), ("prefectApiAuthString", "PREFECT_API_AUTH_STRING")],
)
def test_the_profile_gets_prefect_credentials_only_as_secure_values(template, parameter, name):
    env = _environment(template, **{parameter: "s3cret"})
    assert env[name] == {"name": name, "secureValue": "s3cret"}
    assert [v for v in env.values() if v.get("value") == "s3cret"] == []


def test_the_pool_keeps_its_size_ready_from_the_profiles_revision_in_the_subnet(template):
    pool = the(template, POOLS)
    elasticity = pool["properties"]["elasticityProfile"]
    assert elasticity == {
        "maxReadyCapacity": "[parameters('standbyPoolSize')]",
        "refillPolicy": "always",
    }
    members = pool["properties"]["containerGroupProperties"]
    assert evaluated(template, members["containerGroupProfile"]) == {
        "id": PROFILE_ID,
        "revision": 4,
    }
    [subnet] = members["subnetIds"]
    assert (
        evaluated(template, subnet["id"])
        == f"{GROUP_ID}/providers/Microsoft.Network/virtualNetworks/prefect-vnet/subnets/aci"
    )


def test_the_pool_waits_for_its_profile_and_its_providers_roles(template):
    depends = the(template, POOLS)["dependsOn"]
    assert any("containerGroupProfiles" in d for d in depends)
    for assignment in provider_assignments(template):
        name = assignment["name"].strip("[]")
        assert any(name in d for d in depends), assignment["properties"]["description"]


def test_the_provider_gets_microsofts_roles_on_the_resource_group_only(template):
    assigned = {}
    for assignment in provider_assignments(template):
        role = evaluated(template, assignment["properties"]["roleDefinitionId"])
        assigned[role.rsplit("/", 1)[-1]] = assignment.get("scope", "the resource group")
        assert assignment["properties"]["principalType"] == "ServicePrincipal"
        assert assignment["name"].startswith("[guid(")
    registry = "[resourceId('Microsoft.ContainerRegistry/registries', parameters('registryName'))]"
    assert assigned == {
        **dict.fromkeys(PROVIDER_ROLES, "the resource group"),
        ACR_PULL: registry,
    }


def test_the_providers_registry_role_needs_the_registry(template):
    [acr] = [a for a in provider_assignments(template) if "scope" in a]
    assert acr["condition"] == "[and(variables('standbyPool'), parameters('deployRegistry'))]"


def test_the_worker_may_read_profiles_and_still_assign_only_the_job_identity(template):
    assert (
        "Microsoft.ContainerInstance/containerGroupProfiles/read"
        in (template["variables"]["workerActions"])
    )
    assert template["variables"]["workerLinkedActions"] == [
        "Microsoft.ManagedIdentity/userAssignedIdentities/assign/action",
        "Microsoft.Network/virtualNetworks/subnets/join/action",
    ]


def test_outputs_name_the_profile_its_revision_and_the_pool_or_nothing(template):
    outputs = template["outputs"]
    assert outputs["containerGroupProfileRevision"]["type"] == "int"
    values = {
        name: evaluated(template, outputs[name]["value"])
        for name in ("containerGroupProfileId", "containerGroupProfileRevision", "standbyPoolId")
    }
    assert values == {
        "containerGroupProfileId": "",
        "containerGroupProfileRevision": 0,
        "standbyPoolId": "",
    }
    given = {"standbyPoolSize": 1, "standbyPoolProviderPrincipalId": PROVIDER}
    assert evaluated(template, outputs["containerGroupProfileId"]["value"], **given) == PROFILE_ID
    assert evaluated(template, outputs["containerGroupProfileRevision"]["value"], **given) == 4
    assert evaluated(template, outputs["standbyPoolId"]["value"], **given) == (
        f"{GROUP_ID}/providers/Microsoft.StandbyPool/standbyContainerGroupPools/prefect-standby"
    )


def test_the_standby_pool_has_its_own_worker_on_its_own_work_pool(template):
    """A Prefect worker serves one work pool: the standby pool's (`<workPoolName>-standby`, of the
    claiming worker type) gets a group of its own, the plain worker's twin in all but its name,
    its command and that it waits for the pool; only with a pool and a worker."""
    [plain] = [
        group
        for group in resources_of(template, GROUPS)
        if group["name"] == "[variables('workerGroupName')]"
    ]
    worker = standby_worker(template)
    given = {"standbyPoolSize": 1, "standbyPoolProviderPrincipalId": PROVIDER}
    assert evaluated(template, worker["condition"], **given) is True
    assert evaluated(template, worker["condition"], deployWorker=False, **given) is False
    assert evaluated(template, worker["condition"]) is False
    assert evaluated(template, worker["name"], prefix="p") == "p-standby-worker"
    [container] = worker["properties"]["containers"]
    command = evaluated(template, container["properties"]["command"], workPoolName="pool")
    assert command[command.index("--pool") + 1] == "pool-standby"
    assert command[command.index("--type") + 1] == STANDBY_WORK_POOL_TYPE
    # It asks Prefect for runs every 2 s, the plain worker every 5 (Prefect's default: 10);
    # docs/performance.md says why.
    assert (
        "variables('standbyWorkerEnvironment')" in container["properties"]["environmentVariables"]
    )
    env = evaluated(template, "[variables('standbyWorkerEnvironment')]")
    assert env[-1] == {"name": "PREFECT_WORKER_QUERY_SECONDS", "value": "2"}
    assert env[:-1] == evaluated(template, "[variables('workerEnvironment')]")
    plain_env = evaluated(template, "[variables('plainWorkerEnvironment')]")
    assert plain_env[-1] == {"name": "PREFECT_WORKER_QUERY_SECONDS", "value": "5"}
    assert (
        "variables('plainWorkerEnvironment')"
        in (plain["properties"]["containers"][0]["properties"]["environmentVariables"])
    )
    twin, plain = copy.deepcopy(worker), copy.deepcopy(plain)
    for group in (twin, plain):
        group.pop("condition"), group.pop("name"), group.pop("dependsOn")
        group["properties"]["containers"][0].pop("name")
        for key in ("command", "environmentVariables"):
            group["properties"]["containers"][0]["properties"].pop(key)
    assert twin == plain
    assert f"[resourceId('{POOLS}', variables('standbyPoolName'))]" in worker["dependsOn"]
    output = template["outputs"]["standbyWorkPoolName"]["value"]
    assert evaluated(template, output, workPoolName="pool", **given) == "pool-standby"
    assert evaluated(template, output, workPoolName="pool") == ""


def test_the_record_takes_the_new_outputs_and_does_without_them(template):
    base = {
        "subscriptionId": SUBSCRIPTION,
        "resourceGroupName": "rg",
        "keyVaultUri": "https://vault.vault.azure.net/",
        "jobIdentityId": JOB_IDENTITY,
        "jobIdentityClientId": "00000000-0000-0000-0000-000000000002",
        "subnetId": f"{GROUP_ID}/providers/Microsoft.Network/virtualNetworks/v/subnets/aci",
        "storageAccountName": "st",
        "flowCodeContainerName": "flow-code",
        "workPoolName": "aci-pool",
    }
    without = AzureRecord.model_validate(base)
    assert (without.container_group_profile_id, without.standby_pool_id) == ("", "")
    assert without.container_group_profile_revision == 0
    record = AzureRecord.model_validate(
        {**base, "containerGroupProfileId": PROFILE_ID, "containerGroupProfileRevision": 4}
    )
    assert record.container_group_profile_revision == 4
    assert {"containerGroupProfileId", "standbyPoolId"} <= set(record.outputs())


# --- Azure's schemas ------------------------------------------------------------------------


def test_the_profile_and_the_pool_have_schemas_here(schemas):
    assert (PROFILES.lower(), "2025-09-01") in schemas.definitions
    assert (POOLS.lower(), "2026-04-01") in schemas.definitions


def _broken(template: dict, resource_type: str, change) -> dict:
    broken = copy.deepcopy(template)
    change(resources_of(broken, resource_type)[0])
    return broken


@pytest.mark.parametrize(
    ("resource_type", "change", "where"),
    [
        (
            POOLS,
            lambda r: r["properties"]["elasticityProfile"].update(refillPolicy="never"),
            "refillPolicy",
        ),
        (
            POOLS,
            lambda r: r["properties"]["elasticityProfile"].update(maxReadyCapacity=-1),
            "maxReadyCapacity",
        ),
        (
            POOLS,
            lambda r: r["properties"]["containerGroupProperties"].pop("containerGroupProfile"),
            "containerGroupProperties",
        ),
        # Neither is in a profile's schema (research brief of issue 20, section 1).
        (
            PROFILES,
            lambda r: r["properties"].update(subnetIds=[{"id": "x"}]),
            "properties/subnetIds",
        ),
        (PROFILES, lambda r: r.update(identity={"type": "UserAssigned"}), "identity"),
        (PROFILES, lambda r: r["properties"].update(restartPolicy="Sometimes"), "restartPolicy"),
    ],
)
def test_validation_holds_the_profile_and_the_pool_to_azures_schemas(
    template, schemas, resource_type, change, where
):
    [problem] = validate_template(_broken(template, resource_type, change), schemas)
    assert where in problem


# --- Settings and parameters() ----------------------------------------------------------------

SETTINGS = {
    "AZURE_SUBSCRIPTION_ID": "0b1f6471-1bf0-4dda-aec3-cb9272f09590",
    "AZURE_RESOURCE_GROUP": "prefect-aci-rg",
    "PREFECT_API_URL": "https://api.prefect.cloud/api/accounts/a/workspaces/w",
    "PREFECT_API_KEY": "pnu_key",
    "PREFECT_ACI_DEPLOY_WORKER": "false",
}


@pytest.fixture
def settings(monkeypatch):
    for name, value in SETTINGS.items():
        monkeypatch.setenv(name, value)
    for name in (
        "PREFECT_ACI_STANDBY_POOL_SIZE",
        "PREFECT_ACI_STANDBY_POOL_PROVIDER_PRINCIPAL_ID",
        "PREFECT_ACI_FLOW_RUN_CPU",
        "PREFECT_ACI_FLOW_RUN_MEMORY_GB",
    ):
        monkeypatch.delenv(name, raising=False)
    return load(InfraSettings)


def test_by_default_parameters_ask_for_no_pool_and_the_pools_flow_run_size(settings, template):
    values = parameters(settings, None)
    assert values["standbyPoolSize"] == {"value": 0}
    assert values["standbyPoolProviderPrincipalId"] == {"value": ""}
    assert (values["flowRunCpu"], values["flowRunMemoryInGB"]) == ({"value": "1"}, {"value": "2"})
    for name in (
        "standbyPoolSize",
        "standbyPoolProviderPrincipalId",
        "flowRunCpu",
        "flowRunMemoryInGB",
    ):
        assert values[name]["value"] == template["parameters"][name]["defaultValue"], name


def test_a_pool_and_its_providers_principal_reach_the_template(settings):
    chosen = load(
        InfraSettings,
        standby_pool_size="5",
        standby_pool_provider_principal_id=PROVIDER,
        flow_run_cpu="2",
        flow_run_memory_gb="4.5",
    )
    values = parameters(chosen, None)
    assert values["standbyPoolSize"] == {"value": 5}
    assert values["standbyPoolProviderPrincipalId"] == {"value": PROVIDER}
    assert (values["flowRunCpu"], values["flowRunMemoryInGB"]) == ({"value": "2"}, {"value": "4.5"})


def test_a_pool_without_its_providers_principal_is_refused_on_one_line(settings):
    with pytest.raises(UserError) as caught:
        load(InfraSettings, standby_pool_size="3")
    message = str(caught.value)
    assert "PREFECT_ACI_STANDBY_POOL_PROVIDER_PRINCIPAL_ID" in message
    assert PROVIDER_PRINCIPAL_HINT in message and "\n" not in message


def test_parameters_refuse_such_settings_too(settings):
    """However the settings were made (model_copy skips validation)."""
    unchecked = settings.model_copy(update={"standby_pool_size": 3})
    with pytest.raises(UserError, match="PREFECT_ACI_STANDBY_POOL_PROVIDER_PRINCIPAL_ID"):
        parameters(unchecked, None)


@pytest.mark.parametrize(
    ("field", "value", "rule"),
    [
        (
            "standby_pool_size",
            "2001",
            "PREFECT_ACI_STANDBY_POOL_SIZE must be a whole number of container groups from 0 "
            "to 2000",
        ),
        ("standby_pool_size", "-1", "PREFECT_ACI_STANDBY_POOL_SIZE must be a whole number"),
        ("standby_pool_size", "two", "PREFECT_ACI_STANDBY_POOL_SIZE must be a whole number"),
        (
            "standby_pool_provider_principal_id",
            "Standby Pool Resource Provider",
            "PREFECT_ACI_STANDBY_POOL_PROVIDER_PRINCIPAL_ID must be an object id",
        ),
        ("flow_run_cpu", "8", "PREFECT_ACI_FLOW_RUN_CPU must be at most 4"),
        ("flow_run_memory_gb", "1.25", "PREFECT_ACI_FLOW_RUN_MEMORY_GB must be a multiple of 0.1"),
    ],
)
def test_standby_settings_are_held_to_azures_rules_on_one_line(settings, field, value, rule):
    with pytest.raises(UserError) as caught:
        load(InfraSettings, **{field: value})
    message = str(caught.value)
    assert rule in message and "\n" not in message


def test_an_empty_principal_is_unset(settings, monkeypatch):
    monkeypatch.setenv("PREFECT_ACI_STANDBY_POOL_PROVIDER_PRINCIPAL_ID", "")
    assert load(InfraSettings).standby_pool_provider_principal_id == ""


def test_the_templates_expressions_name_only_declared_parameters_here_too(template):
    names = {
        call.literal(0)
        for resource in standby_resources(template)
        for call in template_calls(resource, "parameters")
    }
    assert names <= set(template["parameters"])
    assert json.dumps(template).count("prefect_aci_runtime.warm") == 1
