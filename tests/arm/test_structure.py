"""The template's structure and expressions, read as data."""

import json
import re

import pytest
from azure.identity import DefaultAzureCredential, ManagedIdentityCredential

from arm.deploy import (
    KEY_VAULT_API,
    WORKER_CONTAINER,
    WORKER_ROLE_PREFIX,
    WORKER_ROLE_SEED,
    worker_group_name,
)
from arm.sweep import SWEEP_ACTIONS
from prefect_aci.core.arm_template import (
    Call,
    ExpressionError,
    Literal,
    Node,
    Property,
    calls,
    is_expression,
    literal_string,
    parse,
    template_calls,
    walk,
)
from tests.arm.conftest import LINKED_ROLE, ROLE, resources_of, worker_environment, worker_group

KEY_VAULT_SECRETS_USER = "4633458b-17de-408a-b874-0445c86b69e6"
STORAGE_BLOB_DATA_CONTRIBUTOR = "ba92f5b4-2d11-453d-a403-e96b0029c9fe"
ACR_PUSH = "8311e382-0749-4cb8-b61a-304f252e45ec"
# What prefect-azure 0.4.13's ACI worker calls (prefect_azure/workers/container_instance.py):
WORKER_CALLS = {
    "Microsoft.Resources/deployments/write": "deployments.begin_create_or_update",
    # Every flow run is a new deployment and a resource group keeps at most 800; ARM prunes the
    # history past 700 as the deploying identity, and only when it may delete deployments.
    "Microsoft.Resources/deployments/delete": "ARM's automatic pruning of its deployments",
    "Microsoft.Resources/deployments/read": "the deployment poller's result",
    "Microsoft.Resources/deployments/operationStatuses/read": "the deployment poller",
    "Microsoft.Resources/subscriptions/resourceGroups/read": "resourceGroup() in its template",
    "Microsoft.ContainerInstance/containerGroups/write": "the container group the deployment "
    "creates",
    "Microsoft.ContainerInstance/containerGroups/read": "container_groups.get",
    "Microsoft.ContainerInstance/containerGroups/delete": "container_groups.begin_delete",
    "Microsoft.ContainerInstance/containerGroups/stop/action": "container_groups.stop",
    "Microsoft.ContainerInstance/containerGroups/containers/logs/read": "containers.list_logs",
    # A claim from the standby pool names the container group profile, and Azure checks that
    # the caller may read it (LinkedAuthorizationFailed otherwise: research brief of issue 20).
    "Microsoft.ContainerInstance/containerGroupProfiles/read": "a claim from the standby pool",
}
# What a container group write needs beyond the write, held only on the job identity and subnet.
LINKED_CALLS = {
    "Microsoft.ManagedIdentity/userAssignedIdentities/assign/action": "identities in the group",
    "Microsoft.Network/virtualNetworks/subnets/join/action": "subnetIds in the group",
}


def referenced(template: dict, function: str) -> set[str]:
    """The names the template's expressions pass to ``function``, as in parameters('name')."""
    return {
        name
        for call in template_calls(template, function)
        if len(call.args) == 1 and isinstance(name := call.literal(0), str)
    }


def test_calls_are_read_from_every_expression_and_from_nothing_else():
    """What the checks below read: the calls of each expression, object keys included, in
    document order; not the text of literals ('[[' escapes, descriptions)."""
    fragment = {
        "[resourceId('T', parameters('a'))]": ["[[parameters('b')]", "see parameters('c')"],
        "x": "[concat(parameters('d'), variables('e').f[0])]",
    }
    assert [str(call) for call in template_calls(fragment)] == [
        "resourceId('T', parameters('a'))",
        "parameters('a')",
        "concat(parameters('d'), variables('e').f[0])",
        "parameters('d')",
        "variables('e')",
    ]
    assert referenced(fragment, "parameters") == {"a", "d"}


def test_an_expression_that_does_not_parse_is_a_defect_too():
    with pytest.raises(ExpressionError, match="is not valid"):
        list(template_calls({"name": "[concat('a', parameters('b')]"}))


def test_every_parameter_reference_is_declared(template):
    assert referenced(template, "parameters") <= set(template["parameters"])


def test_every_variable_reference_is_declared(template):
    assert referenced(template, "variables") <= set(template["variables"])


def test_every_declared_parameter_is_used(template):
    body = {k: v for k, v in template.items() if k != "parameters"}
    used = referenced(body, "parameters") | referenced(template["parameters"], "parameters")
    assert set(template["parameters"]) <= used


def declared_names(template: dict, resource_type: str) -> list[tuple[str, ...]]:
    """The name of each resource of a type, as template strings: a subnet declared inline in a
    virtual network is named by the network's name and its own."""
    found = [(r["name"],) for r in resources_of(template, resource_type)]
    if resource_type == "Microsoft.Network/virtualNetworks/subnets":
        for vnet in resources_of(template, "Microsoft.Network/virtualNetworks"):
            found += [
                (vnet["name"], subnet["name"]) for subnet in vnet["properties"].get("subnets", [])
            ]
    return found


def _occurs(part: Node, names: tuple[str, ...]) -> bool:
    """A name argument of resourceId() is part of a resource's name: an expression as one of its
    sub-expressions, a literal within its text (format('{0}/default', ...) holds 'default')."""
    for name in names:
        if not is_expression(name):
            found = isinstance(part, Literal) and str(part.value) in literal_string(name)
        elif isinstance(part, Literal):
            texts = [str(n.value) for n in walk(parse(name)) if isinstance(n, Literal)]
            found = any(str(part.value) in text for text in texts)
        else:
            found = part in walk(parse(name))
        if found:
            return True
    return False


def _named(template: dict, resource_type: str | int | None, name: Node) -> bool:
    """A resource of that type is named by exactly this expression."""
    return any(
        is_expression(r["name"]) and parse(r["name"]) == name
        for r in resources_of(template, str(resource_type))
    )


def _target_exists(template: dict, target: Call | None) -> bool:
    """The resource a resourceId() or extensionResourceId() call names is in the template."""
    if target is None:
        return False
    if target.name == "extensionResourceId":
        return _named(template, target.literal(1), target.args[2])
    resource_type, names = target.literal(0), target.args[1:]
    if resource_type == "Microsoft.Authorization/roleAssignments":
        return _named(template, resource_type, names[0])
    return any(
        all(_occurs(part, declared) for part in names)
        for declared in declared_names(template, str(resource_type))
    )


def _depends_on_target(reference: str) -> Call | None:
    """The call a dependsOn entry names its resource with: extensionResourceId() when it is the
    entry, else the entry's first resourceId()."""
    if not is_expression(reference):
        return None
    tree = parse(reference)
    if isinstance(tree, Call) and tree.name == "extensionResourceId":
        return tree
    return next(calls(tree, "resourceId"), None)


def test_every_depends_on_target_exists(template):
    missing = [
        (r["type"], ref)
        for r in template["resources"]
        for ref in r.get("dependsOn", [])
        if not _target_exists(template, _depends_on_target(ref))
    ]
    assert missing == []


def test_every_resource_id_names_a_resource_of_the_template(template):
    local_types = {r["type"] for r in template["resources"]}
    local_types.add("Microsoft.Network/virtualNetworks/subnets")
    for call in template_calls(template, "resourceId"):
        assert call.literal(0) in local_types, str(call)
        assert _target_exists(template, call), str(call)


def test_secure_parameters_default_to_nothing(template):
    secure = {
        n: p
        for n, p in template["parameters"].items()
        if p["type"].lower() in ("securestring", "secureobject")
    }
    assert set(secure) == {"prefectApiKey", "prefectApiAuthString", "demoSecretValue"}
    # An optional credential defaults to nothing, never to a value.
    assert [n for n, p in secure.items() if p.get("defaultValue", "") != ""] == []


def test_every_parameter_is_described(template):
    assert [
        n for n, p in template["parameters"].items() if not p.get("metadata", {}).get("description")
    ] == []


def test_no_output_carries_a_secret(template):
    secure = {n for n, p in template["parameters"].items() if p["type"].lower() == "securestring"}
    for name, output in template["outputs"].items():
        text = json.dumps(output)
        assert output["type"].lower() not in ("securestring", "secureobject"), name
        assert not (referenced(output, "parameters") & secure), name
        listed = [c for c in template_calls(output) if re.fullmatch(r"list[A-Z]\w*", c.name)]
        assert listed == [], name  # listKeys, listCredentials, ...
        assert "secret" not in text.lower() or name == "keyVaultUri", name


def test_outputs_give_what_the_next_stages_need(template):
    assert {
        "keyVaultUri",
        "workerIdentityId",
        "workerIdentityClientId",
        "jobIdentityId",
        "jobIdentityClientId",
        "subnetId",
        "registryLoginServer",
        "storageAccountName",
        "storageBlobEndpoint",
        "flowCodeContainerName",
        "workPoolName",
    } <= set(template["outputs"])


def test_tini_comes_first_in_the_worker_command(template):
    command_ref = worker_group(template)["properties"]["containers"][0]["properties"]["command"]
    variable = next(template_calls(command_ref, "variables")).literal(0)
    command = template["variables"][variable]
    assert command[:4] == ["/usr/bin/tini", "-g", "--", "/opt/prefect/entrypoint.sh"]
    assert command[4:8] == ["prefect", "worker", "start", "--pool"]
    assert command[command.index("--type") + 1] == "azure-container-instance"


def test_worker_gets_api_key_only_as_secure_value_and_its_client_id(template):
    env = worker_environment(template, prefectApiKey="pnu_key")
    assert env["PREFECT_API_KEY"] == {"name": "PREFECT_API_KEY", "secureValue": "pnu_key"}
    assert env["AZURE_CLIENT_ID"] == {"name": "AZURE_CLIENT_ID", "value": "worker-client-id"}
    assert "PREFECT_API_AUTH_STRING" not in env


def test_worker_gets_a_servers_auth_string_only_as_secure_value(template):
    env = worker_environment(template, prefectApiAuthString="user:pass")
    assert env["PREFECT_API_AUTH_STRING"] == {
        "name": "PREFECT_API_AUTH_STRING",
        "secureValue": "user:pass",
    }
    # No empty secure value for the key it was not given: ACI takes one of value or secureValue.
    assert "PREFECT_API_KEY" not in env


def test_worker_runs_in_the_subnet_always_restarting_with_its_identity(template):
    group = worker_group(template)
    assert group["properties"]["restartPolicy"] == "Always"
    assert group["properties"]["ipAddress"]["type"] == "Private"
    assert "variables('subnetName')" in group["properties"]["subnetIds"][0]["id"]
    assert list(group["identity"]["userAssignedIdentities"]) == [
        "[resourceId('Microsoft.ManagedIdentity/userAssignedIdentities', "
        "variables('workerIdentityName'))]"
    ]
    credentials = group["properties"]["imageRegistryCredentials"]
    assert "'identity'" in credentials and "workerIdentityName" in credentials


def test_worker_depends_on_its_role_assignments(template):
    depends = " ".join(worker_group(template)["dependsOn"])
    assert "roleAssignments" in depends and "workerRoleName" in depends
    assert "acrPullRoleId" in depends


def _deployer_assignments(template: dict) -> list[dict]:
    return [
        a
        for a in resources_of(template, "Microsoft.Authorization/roleAssignments")
        if a["properties"]["principalId"] == "[parameters('deployerPrincipalId')]"
    ]


def test_role_assignments_are_guid_named_for_service_principals(template):
    deployer = _deployer_assignments(template)
    for assignment in resources_of(template, "Microsoft.Authorization/roleAssignments"):
        assert assignment["name"].startswith("[guid("), assignment["name"]
        expected = (
            "[parameters('deployerPrincipalType')]"
            if assignment in deployer
            else "ServicePrincipal"
        )
        assert assignment["properties"]["principalType"] == expected


def test_deployer_gets_only_upload_and_push_and_only_when_named(template):
    """make deploy-all passes the object id from the caller's token: Storage Blob Data
    Contributor on the flow-code container (not the account) and AcrPush on the registry."""
    by_role = {a["properties"]["roleDefinitionId"]: a for a in _deployer_assignments(template)}
    assert set(by_role) == {
        "[variables('storageBlobDataContributorRoleId')]",
        "[variables('acrPushRoleId')]",
    }
    variables = template["variables"]
    assert STORAGE_BLOB_DATA_CONTRIBUTOR in variables["storageBlobDataContributorRoleId"]
    assert ACR_PUSH in variables["acrPushRoleId"]
    upload = by_role["[variables('storageBlobDataContributorRoleId')]"]
    assert "blobServices/containers" in upload["scope"]
    assert upload["condition"] == "[not(empty(parameters('deployerPrincipalId')))]"
    push = by_role["[variables('acrPushRoleId')]"]
    assert push["scope"] == (
        "[resourceId('Microsoft.ContainerRegistry/registries', parameters('registryName'))]"
    )
    assert "deployRegistry" in push["condition"] and "deployerPrincipalId" in push["condition"]
    assert template["parameters"]["deployerPrincipalId"]["defaultValue"] == ""
    assert set(template["parameters"]["deployerPrincipalType"]["allowedValues"]) >= {
        "User",
        "ServicePrincipal",
    }


def test_key_vault_secrets_user_is_scoped_to_the_vault_not_the_group(template):
    [assignment] = [
        a
        for a in resources_of(template, "Microsoft.Authorization/roleAssignments")
        if "keyVaultSecretsUserRoleId" in a["properties"]["roleDefinitionId"]
    ]
    assert KEY_VAULT_SECRETS_USER in template["variables"]["keyVaultSecretsUserRoleId"]
    assert assignment["scope"] == (
        "[resourceId('Microsoft.KeyVault/vaults', parameters('keyVaultName'))]"
    )
    assert "jobIdentityName" in assignment["properties"]["principalId"]


def test_job_identity_reads_only_the_flow_code_container(template):
    [assignment] = [
        a
        for a in resources_of(template, "Microsoft.Authorization/roleAssignments")
        if "storageBlobDataReaderRoleId" in a["properties"]["roleDefinitionId"]
    ]
    assert "blobServices/containers" in assignment["scope"]


def test_key_vault_uses_rbac_soft_delete_and_optional_purge_protection(template):
    [vault] = resources_of(template, "Microsoft.KeyVault/vaults")
    properties = vault["properties"]
    assert properties["enableRbacAuthorization"] is True
    assert properties["enableSoftDelete"] is True
    assert properties["enablePurgeProtection"] == (
        "[if(parameters('enablePurgeProtection'), true(), null())]"
    )


def test_subnet_is_delegated_to_aci_and_leaves_through_the_nat_gateway(template):
    [vnet] = resources_of(template, "Microsoft.Network/virtualNetworks")
    [subnet] = vnet["properties"]["subnets"]
    delegations = [d["properties"]["serviceName"] for d in subnet["properties"]["delegations"]]
    assert delegations == ["Microsoft.ContainerInstance/containerGroups"]
    assert "natGateways" in subnet["properties"]["natGateway"]["id"]
    [ip] = resources_of(template, "Microsoft.Network/publicIPAddresses")
    assert ip["sku"]["name"] == "Standard"
    assert ip["properties"]["publicIPAllocationMethod"] == "Static"


def test_subnet_reaches_key_vault_and_storage_through_service_endpoints(template):
    """Microsoft Learn, "Virtual network scenarios and resources" (ACI): a container group in a
    virtual network that connects to a storage account needs a service endpoint for it. The
    vault's firewall admits the subnet by its Microsoft.KeyVault endpoint."""
    [vnet] = resources_of(template, "Microsoft.Network/virtualNetworks")
    [subnet] = vnet["properties"]["subnets"]
    services = [e["service"] for e in subnet["properties"]["serviceEndpoints"]]
    assert sorted(services) == ["Microsoft.KeyVault", "Microsoft.Storage"]
    [vault] = resources_of(template, "Microsoft.KeyVault/vaults")
    [rule] = vault["properties"]["networkAcls"]["virtualNetworkRules"]
    assert rule["ignoreMissingVnetServiceEndpoint"] is False


def test_key_vault_retention_is_a_parameter_within_azures_range(template):
    [vault] = resources_of(template, "Microsoft.KeyVault/vaults")
    assert vault["properties"]["softDeleteRetentionInDays"] == (
        "[parameters('softDeleteRetentionInDays')]"
    )
    parameter = template["parameters"]["softDeleteRetentionInDays"]
    assert (parameter["minValue"], parameter["maxValue"]) == (7, 90)
    assert "only when the vault is created" in parameter["metadata"]["description"]


def test_storage_has_shared_key_access_off_by_default(template):
    assert template["parameters"]["allowSharedKeyAccess"]["defaultValue"] is False


def test_worker_role_has_exactly_what_the_worker_calls(template):
    assert sorted(template["variables"]["workerActions"]) == sorted(WORKER_CALLS)
    assert sorted(template["variables"]["workerLinkedActions"]) == sorted(LINKED_CALLS)


def test_the_worker_may_assign_only_the_job_identity_and_join_only_the_subnet(template):
    """assign/action at the resource group would let a flow run (which may set its own job
    variables) start a group as the worker's identity: the linked role is assigned on the job
    identity and on the subnet, and nowhere else."""
    linked = "variables('workerLinkedRoleName')"
    scopes = sorted(
        a.get("scope", "the resource group")
        for a in resources_of(template, "Microsoft.Authorization/roleAssignments")
        if linked in a["properties"]["roleDefinitionId"]
    )
    assert scopes == [
        "[resourceId('Microsoft.ManagedIdentity/userAssignedIdentities', "
        "variables('jobIdentityName'))]",
        "[resourceId('Microsoft.Network/virtualNetworks/subnets', variables('vnetName'), "
        "variables('subnetName'))]",
    ]
    assert not set(LINKED_CALLS) & set(template["variables"]["workerActions"])


@pytest.mark.parametrize(
    ("role_file", "variable"),
    [(ROLE, "workerActions"), (LINKED_ROLE, "workerLinkedActions")],
)
def test_custom_role_files_match_the_template_and_az_format(template, role_file, variable):
    role = json.loads(role_file.read_text())
    assert sorted(role["Actions"]) == sorted(template["variables"][variable])
    assert role["IsCustom"] is True
    assert set(role) >= {"Name", "Description", "Actions", "NotActions", "AssignableScopes"}
    assert not any("*" in action for action in role["Actions"])


def test_literal_defaults_satisfy_their_own_constraints(template):
    broken = []
    for name, parameter in template["parameters"].items():
        default = parameter.get("defaultValue")
        if default is None or (isinstance(default, str) and default.startswith("[")):
            continue
        if isinstance(default, str) and not (
            parameter.get("minLength", 0) <= len(default) <= parameter.get("maxLength", 10**6)
        ):
            broken.append(name)
        if "allowedValues" in parameter and default not in parameter["allowedValues"]:
            broken.append(name)
        if (
            isinstance(default, int)
            and not isinstance(default, bool)
            and not (
                parameter.get("minValue", default) <= default <= parameter.get("maxValue", default)
            )
        ):
            broken.append(name)
    assert broken == []


# Azure's name length limits for the resources the template names from its prefix (Microsoft
# Learn, "Naming rules and restrictions for Azure resources").
AZURE_NAME_LIMITS = {
    "Microsoft.KeyVault/vaults": 24,
    "Microsoft.Storage/storageAccounts": 24,
    "Microsoft.ContainerRegistry/registries": 50,
    "Microsoft.ManagedIdentity/userAssignedIdentities": 128,
    "Microsoft.Network/virtualNetworks": 64,
    "Microsoft.Network/natGateways": 80,
    "Microsoft.Network/publicIPAddresses": 80,
    "Microsoft.ContainerInstance/containerGroups": 63,
    # The schemas' name patterns: a profile 1-63 characters, a standby pool 3-24.
    "Microsoft.ContainerInstance/containerGroupProfiles": 63,
    "Microsoft.StandbyPool/standbyContainerGroupPools": 24,
}
UNIQUE_STRING_LENGTH = 13  # uniqueString() always returns 13 characters


def longest(value: str, template: dict) -> int:
    """The longest string a template string can make, reading the template's own expressions:
    parameters count at their maxLength (else their default), uniqueString() at 13."""
    if not is_expression(value):
        return len(literal_string(value))
    return _longest(parse(value), template)


def _longest(node: Node, template: dict) -> int:
    match node:
        case Literal(value):
            return len(str(value))
        case Call("toLower", (arg,)):
            return _longest(arg, template)
        case Call("format", (Literal(str() as pattern), *args)):
            literal = re.sub(r"\{\d+\}", "", pattern)
            return len(literal) + sum(_longest(arg, template) for arg in args)
        case Call("uniqueString"):
            return UNIQUE_STRING_LENGTH
        case Property(Call("resourceGroup", ()), "name"):
            return 90  # Azure's limit for a resource group's name
        case Property(Call("subscription", ()), "subscriptionId"):
            return 36
        case Call("parameters", (Literal(str() as name),)):
            parameter = template["parameters"][name]
            if "maxLength" in parameter:
                return parameter["maxLength"]
            return longest(str(parameter["defaultValue"]), template)
        case Call("variables", (Literal(str() as name),)):
            return longest(template["variables"][name], template)
    raise AssertionError(f"no rule for {node}")


def test_generated_names_fit_azure_limits_with_the_longest_prefix(template):
    checked = []
    for resource in template["resources"]:
        limit = AZURE_NAME_LIMITS.get(resource["type"])
        if limit is None:
            continue
        assert longest(resource["name"], template) <= limit, resource["name"]
        checked.append(resource["type"])
    assert set(checked) == set(AZURE_NAME_LIMITS)


def test_generated_name_defaults_fit_their_own_parameter(template):
    generated = {
        name: parameter
        for name, parameter in template["parameters"].items()
        if any(template_calls(parameter.get("defaultValue"), "uniqueString"))
    }
    assert set(generated) == {"keyVaultName", "registryName", "storageAccountName"}
    for name, parameter in generated.items():
        assert longest(parameter["defaultValue"], template) <= parameter["maxLength"], name


def test_longest_reads_the_template_not_literals(template):
    # A longer prefix limit than the template allows would break the Key Vault name.
    wider = json.loads(json.dumps(template))
    wider["parameters"]["prefix"]["maxLength"] = 12
    assert longest(wider["parameters"]["keyVaultName"]["defaultValue"], wider) == 12 + 2 + 13


def test_worker_role_lets_arm_prune_deployment_history_and_sweep(template):
    """Every flow run is an ARM deployment; past 700 ARM deletes old ones as the deploying
    identity, and only with deployments/delete; at 800 every submission would fail."""
    actions = set(template["variables"]["workerActions"])
    assert "Microsoft.Resources/deployments/delete" in actions
    assert set(SWEEP_ACTIONS) <= actions
    assert set(SWEEP_ACTIONS) <= set(json.loads(ROLE.read_text())["Actions"])


def _role_definition(template: dict) -> dict:
    [role] = [
        r
        for r in resources_of(template, "Microsoft.Authorization/roleDefinitions")
        if r["name"] == "[variables('workerRoleName')]"
    ]
    return role


def test_custom_role_name_is_unique_per_subscription_and_resource_group(template):
    """A custom role's display name is unique in the whole Microsoft Entra tenant: a resource
    group of the same name in another subscription must not collide."""
    role = _role_definition(template)
    name = role["properties"]["roleName"]
    assert "resourceGroup().name" in name
    assert "subscription().subscriptionId" in name or "resourceGroup().id" in name
    assert name.startswith(f"[format('{WORKER_ROLE_PREFIX}")
    # Microsoft Learn, "Azure custom roles": the display name takes up to 512 characters.
    assert longest(name, template) <= 512
    # The role's id is what make destroy computes to delete it (arm.deploy.worker_role).
    assert template["variables"]["workerRoleName"] == (
        f"[guid(resourceGroup().id, '{WORKER_ROLE_SEED}')]"
    )
    assert role["name"] == "[variables('workerRoleName')]"


def test_custom_role_file_names_subscription_and_resource_group():
    name = json.loads(ROLE.read_text())["Name"]
    assert "{subscriptionId}" in name and "{resourceGroupName}" in name
    # Not the template's name for the same group: both roles can exist side by side.
    assert not name.startswith(WORKER_ROLE_PREFIX)


def _registry(template: dict) -> dict:
    [registry] = resources_of(template, "Microsoft.ContainerRegistry/registries")
    return registry


def test_registry_pins_the_role_mode_its_acr_pull_and_push_assignments_need(template):
    """ACR's ABAC repository permissions mode ignores AcrPull and AcrPush: the template pins
    the legacy mode, which its role assignments rely on."""
    registry = _registry(template)
    assert registry["properties"]["roleAssignmentMode"] == "LegacyRegistryPermissions"
    roles = {
        a["properties"]["roleDefinitionId"]
        for a in resources_of(template, "Microsoft.Authorization/roleAssignments")
        if a.get("scope", "").startswith("[resourceId('Microsoft.ContainerRegistry/registries'")
    }
    assert roles == {"[variables('acrPullRoleId')]", "[variables('acrPushRoleId')]"}


def test_registry_default_is_the_documented_identity_pull_into_a_vnet(template):
    """'Deploy to ACI from ACR using a managed identity': Premium, trusted services allowed."""
    assert template["parameters"]["registrySku"]["defaultValue"] == "Premium"
    assert {"Basic", "Standard"} <= set(template["parameters"]["registrySku"]["allowedValues"])
    assert _registry(template)["properties"]["networkRuleBypassOptions"] == "AzureServices"
    assert "token" in template["parameters"]["registrySku"]["metadata"]["description"]


def _worker_env(template: dict) -> dict:
    assert worker_group(template)["properties"]["containers"][0]["name"] == WORKER_CONTAINER
    return worker_environment(template, prefectApiKey="k")


def test_worker_uses_its_managed_identity_without_the_imds_probe(template):
    assert _worker_env(template)["AZURE_TOKEN_CREDENTIALS"] == {
        "name": "AZURE_TOKEN_CREDENTIALS",
        "value": "ManagedIdentityCredential",
    }


def test_that_setting_leaves_default_credential_only_the_managed_identity(template, monkeypatch):
    value = _worker_env(template)["AZURE_TOKEN_CREDENTIALS"]["value"]
    monkeypatch.setenv("AZURE_TOKEN_CREDENTIALS", value)
    chain = DefaultAzureCredential().credentials
    assert [type(c) for c in chain] == [ManagedIdentityCredential]


def test_key_vault_firewall_lets_no_azure_service_bypass_it(template):
    """Secrets deployed by ARM are control plane, and ACI is no trusted service: only the
    flow-run subnet reaches the vault's data plane."""
    [vault] = resources_of(template, "Microsoft.KeyVault/vaults")
    acls = vault["properties"]["networkAcls"]
    assert acls["bypass"] == "None"
    assert acls["defaultAction"] == "Deny"
    assert len(acls["virtualNetworkRules"]) == 1


def test_purge_protection_says_when_to_turn_it_on(template):
    text = template["parameters"]["enablePurgeProtection"]["metadata"]["description"]
    assert "on for" in text and "cannot be turned off" in text


def _newest_held(schemas) -> dict[str, str]:
    newest: dict[str, str] = {}
    for resource_type, version in schemas.definitions:
        if "preview" not in version:
            newest[resource_type] = max(newest.get(resource_type, ""), version)
    return newest


def test_every_resource_uses_the_newest_ga_api_version_held_in_arm_schemas(template, schemas):
    newest = _newest_held(schemas)
    older = [
        (r["type"], r["apiVersion"], newest[r["type"].lower()])
        for r in template["resources"]
        if r["apiVersion"] != newest[r["type"].lower()]
    ]
    assert older == []


def _reads(reference: Call) -> tuple[str, str] | None:
    """(type, apiVersion) of reference(resourceId('<type>', ...), '<apiVersion>')."""
    match reference.args:
        case (Call("resourceId", (Literal(str() as resource_type), *_)), Literal(str() as version)):
            return resource_type, version
    return None


def test_every_reference_reads_the_api_version_its_resource_is_deployed_with(template):
    deployed = {r["type"]: r["apiVersion"] for r in template["resources"]}
    found = [read for call in template_calls(template, "reference") if (read := _reads(call))]
    assert found
    assert [(t, v) for t, v in found if deployed[t] != v] == []


@pytest.mark.parametrize("parameter", ["workerCpu", "workerMemoryInGB"])
def test_worker_size_says_aci_cannot_change_it_in_place(template, parameter):
    assert "--replace-worker" in template["parameters"][parameter]["metadata"]["description"]


def test_names_the_commands_compute_agree_with_the_template(template):
    """deploy (worker size check, the vault's retention), destroy (the custom role) and sweep
    (the worker to spare) compute names the template makes, and read with its apiVersions."""
    [vault] = resources_of(template, "Microsoft.KeyVault/vaults")
    assert vault["apiVersion"] == KEY_VAULT_API
    # deploy recognises the default vault name by this form: <prefix>kv + 13 characters.
    assert template["parameters"]["keyVaultName"]["defaultValue"] == (
        "[toLower(format('{0}kv{1}', parameters('prefix'), uniqueString(resourceGroup().id)))]"
    )
    assert template["variables"]["workerGroupName"] == (
        f"[format('{worker_group_name('{0}')}', parameters('prefix'))]"
    )
    assert worker_group(template)["name"] == "[variables('workerGroupName')]"


def test_the_sweeper_role_holds_the_sweeps_actions_only_and_exists_only_with_a_schedule(template):
    """With scheduledSweep (PREFECT_ACI_SWEEP_EVERY) the job identity may do what the sweep calls,
    on the resource group, and nothing else; without it (the default) nothing of it is made."""
    assert template["parameters"]["scheduledSweep"]["defaultValue"] is False
    assert sorted(template["variables"]["sweeperActions"]) == sorted(SWEEP_ACTIONS)
    [role] = [
        r
        for r in resources_of(template, "Microsoft.Authorization/roleDefinitions")
        if r["name"] == "[variables('sweeperRoleName')]"
    ]
    assert role["condition"] == "[parameters('scheduledSweep')]"
    assert role["properties"]["permissions"] == [
        {"actions": "[variables('sweeperActions')]", "notActions": []}
    ]
    [assignment] = [
        r
        for r in resources_of(template, "Microsoft.Authorization/roleAssignments")
        if "sweeperRoleName" in r["properties"]["roleDefinitionId"]
    ]
    assert assignment["condition"] == "[parameters('scheduledSweep')]"
    assert "scope" not in assignment  # the resource group the template deploys to
    assert "variables('jobIdentityName')" in assignment["properties"]["principalId"]
