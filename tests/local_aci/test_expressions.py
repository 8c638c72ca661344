"""ARM template expressions as Resource Manager evaluates them, for what flow-run and worker
templates use; an unsupported function fails the deployment naming it."""

import json

import pytest

from prefect_aci.core.paths import PROJECT_ROOT
from prefect_aci.local_aci.expressions import Scope, TemplateError, evaluate, unique_string

SUBSCRIPTION = "0b1f6471-1bf0-4dda-aec3-cb9272f09590"


def scope(template: dict | None = None, given: dict | None = None, references=None) -> Scope:
    return Scope(
        SUBSCRIPTION, "rg", "westeurope", "dep", template or {}, given or {}, references or {}
    )


def test_resource_group_and_subscription():
    assert evaluate("[resourceGroup().location]", scope()) == "westeurope"
    assert (
        evaluate("[resourceGroup().id]", scope())
        == f"/subscriptions/{SUBSCRIPTION}/resourceGroups/rg"
    )
    assert evaluate("[subscription().subscriptionId]", scope()) == SUBSCRIPTION


def test_parameters_given_win_over_defaults_which_are_expressions_themselves():
    template = {"parameters": {"a": {"defaultValue": "[resourceGroup().name]"}, "b": {}}}
    assert evaluate("[parameters('a')]", scope(template)) == "rg"
    assert evaluate("[parameters('a')]", scope(template, {"a": "given"})) == "given"
    with pytest.raises(TemplateError, match="'b' is not provided"):
        evaluate("[parameters('b')]", scope(template))
    with pytest.raises(TemplateError, match="'c' is not found"):
        evaluate("[parameters('c')]", scope(template))


def test_unique_string_is_13_lower_case_characters_and_deterministic():
    first = evaluate("[uniqueString(resourceGroup().id)]", scope())
    assert len(first) == 13 and first.isalnum() and first == first.lower()
    assert first == unique_string(f"/subscriptions/{SUBSCRIPTION}/resourceGroups/rg")
    assert first != evaluate("[uniqueString('other')]", scope())


def test_strings_escapes_and_literal_brackets():
    assert evaluate("[concat('it''s', ' ', 'fine')]", scope()) == "it's fine"
    assert evaluate("[[not an expression]", scope()) == "[not an expression]"
    assert evaluate("plain", scope()) == "plain"
    assert evaluate("[format('{0}-{1}', 'a', 2)]", scope()) == "a-2"
    assert evaluate("[toLower('ABC')]", scope()) == "abc"


def test_if_evaluates_only_the_branch_it_takes():
    # reference() of a resource that does not exist would fail; if() must not touch it.
    assert evaluate("[if(equals(1, 1), 'yes', reference('/nope').x)]", scope()) == "yes"
    with pytest.raises(TemplateError, match="reference"):
        evaluate("[if(equals(1, 2), 'yes', reference('/nope').x)]", scope())


def test_property_and_index_access():
    assert evaluate("[createArray('a', 'b')[1]]", scope()) == "b"
    assert evaluate("[createObject('k', 'v').k]", scope()) == "v"
    assert evaluate("[json('{\"n\": 1.5}').n]", scope()) == 1.5


def test_unsupported_function_fails_naming_it():
    with pytest.raises(TemplateError, match="'listKeys' is not supported by the local ACI"):
        evaluate("[listKeys('x', '2023-01-01')]", scope())


def test_malformed_expression_fails_clearly():
    with pytest.raises(TemplateError, match="is not valid"):
        evaluate("[concat('a']", scope())


def test_the_arm_templates_worker_group_evaluates_for_a_local_azure():
    template = json.loads((PROJECT_ROOT / "arm" / "azuredeploy.json").read_text())
    [worker] = [
        r
        for r in template["resources"]
        if r["type"].endswith("containerGroups") and r["name"] == "[variables('workerGroupName')]"
    ]
    group_id = f"/subscriptions/{SUBSCRIPTION}/resourceGroups/rg"
    identity = (
        f"{group_id}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/prefect-worker-id"
    )
    given = {
        "prefectApiUrl": "http://server/api",
        "prefectApiKey": "k",
        "workerImage": "img",
        "deployRegistry": False,
        "deployWorker": True,
    }
    body = {k: v for k, v in worker.items() if k not in ("condition", "dependsOn")}
    evaluated = evaluate(body, scope(template, given, {identity.lower(): {"clientId": "cid"}}))
    container = evaluated["properties"]["containers"][0]["properties"]
    assert container["command"][:4] == ["/usr/bin/tini", "-g", "--", "/opt/prefect/entrypoint.sh"]
    env = {v["name"]: v.get("value") for v in container["environmentVariables"]}
    assert env["AZURE_CLIENT_ID"] == "cid"
    assert evaluated["properties"]["imageRegistryCredentials"] is None
    assert list(evaluated["identity"]["userAssignedIdentities"]) == [identity]


def _rfc4122_v5(namespace: str, name: str) -> str:
    """RFC 4122 section 4.3, written out: SHA-1 of the namespace's bytes and the UTF-8 name."""
    import hashlib
    import uuid

    digest = bytearray(hashlib.sha1(uuid.UUID(namespace).bytes + name.encode()).digest()[:16])  # noqa: S324 (the RFC's hash)
    digest[6] = (digest[6] & 0x0F) | 0x50
    digest[8] = (digest[8] & 0x3F) | 0x80
    return str(uuid.UUID(bytes=bytes(digest)))


def test_guid_is_arms_v5_uuid_of_the_arguments_joined_with_hyphens_in_one_implementation():
    from arm.deploy import arm_guid as deploy_guid

    expected = _rfc4122_v5(
        "11fb06fb-712d-4ddd-98c7-e71bbd588830",
        f"/subscriptions/{SUBSCRIPTION}/resourceGroups/rg-worker",
    )
    assert evaluate("[guid(resourceGroup().id, 'worker')]", scope()) == expected
    assert deploy_guid(f"/subscriptions/{SUBSCRIPTION}/resourceGroups/rg", "worker") == expected
    assert evaluate("[GUID('ä')]", scope()) == _rfc4122_v5(
        "11fb06fb-712d-4ddd-98c7-e71bbd588830", "ä"
    )


def test_function_names_are_case_insensitive_as_in_arm():
    assert evaluate("[TOLOWER('AbC')]", scope()) == "abc"
    assert evaluate("[If(Equals(1, 1), 'yes', 'no')]", scope()) == "yes"
    assert evaluate("[resourcegroup().name]", scope()) == "rg"


def test_string_of_objects_and_arrays_is_compact_json():
    # Microsoft Learn, "String functions for ARM templates", string(): the example's outputs.
    template = {
        "parameters": {
            "testObject": {"defaultValue": {"valueA": 10, "valueB": "Example Text"}},
            "testArray": {"defaultValue": ["a", "b", "c"]},
        }
    }
    at = scope(template)
    assert (
        evaluate("[string(parameters('testObject'))]", at)
        == '{"valueA":10,"valueB":"Example Text"}'
    )
    assert evaluate("[string(parameters('testArray'))]", at) == '["a","b","c"]'
    assert evaluate("[string(5)]", at) == "5"
    assert evaluate("[string(true())]", at) == "True"


def test_resource_ids_take_their_optional_scopes():
    base = f"/subscriptions/{SUBSCRIPTION}"
    assert (
        evaluate(
            "[resourceId('Microsoft.Network/virtualNetworks/subnets', 'vnet', 'aci')]", scope()
        )
        == f"{base}/resourceGroups/rg/providers/Microsoft.Network/virtualNetworks/vnet/subnets/aci"
    )
    assert (
        evaluate("[resourceId('otherGroup', 'Microsoft.Storage/storageAccounts', 'sa')]", scope())
        == f"{base}/resourceGroups/otherGroup/providers/Microsoft.Storage/storageAccounts/sa"
    )
    assert (
        evaluate("[resourceId('sub2', 'g2', 'Microsoft.Storage/storageAccounts', 'sa')]", scope())
        == "/subscriptions/sub2/resourceGroups/g2/providers/Microsoft.Storage/storageAccounts/sa"
    )
    assert (
        evaluate(
            "[subscriptionResourceId('Microsoft.Authorization/roleDefinitions', 'r1')]", scope()
        )
        == f"{base}/providers/Microsoft.Authorization/roleDefinitions/r1"
    )
    assert (
        evaluate(
            "[extensionResourceId(resourceId('Microsoft.KeyVault/vaults', 'kv'), "
            "'Microsoft.Authorization/roleAssignments', 'a1')]",
            scope(),
        )
        == f"{base}/resourceGroups/rg/providers/Microsoft.KeyVault/vaults/kv/providers/"
        "Microsoft.Authorization/roleAssignments/a1"
    )
    with pytest.raises(TemplateError, match="requires '2' resource name"):
        evaluate("[resourceId('Microsoft.Network/virtualNetworks/subnets', 'vnet')]", scope())


def test_and_or():
    assert evaluate("[and(true(), not(false()))]", scope()) is True
    assert evaluate("[or(false(), false())]", scope()) is False


def test_variables_that_read_deployed_resources_are_refused_when_the_template_is_read():
    from prefect_aci.local_aci.expressions import check_variables

    check_variables({"variables": {"name": "[toLower('A')]"}})
    with pytest.raises(
        TemplateError, match=r"variable 'id' is not valid.*'reference' is not expected"
    ):
        check_variables({"variables": {"id": "[reference('x').principalId]"}})
    with pytest.raises(TemplateError, match="'listKeys' is not expected"):
        check_variables({"variables": {"keys": {"k": "[listKeys('x', '2023-01-01')]"}}})


def test_parameter_values_are_checked_against_their_declarations():
    from prefect_aci.local_aci.expressions import check_parameters

    declared = {
        "parameters": {
            "size": {"type": "int", "minValue": 1, "maxValue": 4},
            "sku": {"type": "string", "allowedValues": ["Basic", "Premium"]},
            "prefix": {"type": "string", "minLength": 3, "maxLength": 5},
            "flag": {"type": "bool"},
        }
    }
    check_parameters(declared, {"size": 2, "sku": "Basic", "prefix": "abc", "flag": False})
    cases = [
        ({"size": "2"}, "Expected a value of type 'int', but received a value of type 'String'"),
        ({"size": True}, "of type 'Boolean'"),
        ({"size": 5}, "less than or equal to '4', actual value '5'"),
        ({"size": 0}, "greater than or equal to '1'"),
        (
            {"sku": "Standard"},
            "'Standard' is not part of the allowed value\\(s\\): 'Basic,Premium'",
        ),
        ({"prefix": "ab"}, "length to be greater than or equal to '3'"),
        ({"prefix": "abcdef"}, "length to be less than or equal to '5'"),
        ({"other": 1}, "do not correspond to any parameters defined in the template: 'other'"),
    ]
    for given, message in cases:
        with pytest.raises(TemplateError, match=message):
            check_parameters(declared, given)


def test_the_arm_template_passes_arms_read_checks_with_what_deploy_sends():
    """The template's variables and the parameters `prefect-aci azure deploy` sends."""
    from arm.deploy import TEMPLATE, load_template, parameters
    from arm.settings import InfraSettings
    from prefect_aci.local_aci.expressions import check_parameters, check_variables

    template = load_template(TEMPLATE)
    settings = InfraSettings(
        azure_subscription_id=SUBSCRIPTION,
        azure_resource_group="rg",
        prefect_api_url="https://api.prefect.cloud/api/accounts/a/workspaces/w",
        prefect_api_key="pnu_" + "x" * 36,
        deploy_worker=False,
    )
    check_variables(template)
    sent = parameters(settings, None, None)
    check_parameters(template, {name: value["value"] for name, value in sent.items()})


def test_every_function_the_arm_template_calls_is_evaluated():
    from prefect_aci.core.arm_template import template_calls
    from prefect_aci.local_aci.expressions import FUNCTIONS

    template = json.loads((PROJECT_ROOT / "arm" / "azuredeploy.json").read_text())
    known = {name.lower() for name in FUNCTIONS} | {"if"}
    used = {call.name for call in template_calls(template)}
    assert {"and", "or", "if", "subscriptionResourceId", "extensionResourceId"} & used
    assert {name for name in used if name.lower() not in known} == set()


def test_reference_gives_properties_or_with_full_the_whole_body():
    # Microsoft Learn, "Resource functions for ARM templates", reference(): properties by
    # default; 'Full' adds the resource's id, location, and the rest of its GET body.
    vault = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.KeyVault/vaults/kv"
    body = {"id": vault, "location": "westeurope", "properties": {"vaultUri": "https://kv/"}}
    recorded = {vault.lower(): body}
    at = Scope(
        SUBSCRIPTION, "rg", "westeurope", "dep", {}, {}, lookup=lambda i: recorded.get(i.lower())
    )
    ref = f"reference('{vault.upper()}'"
    assert evaluate(f"[{ref}, '2026-02-01').vaultUri]", at) == "https://kv/"
    assert evaluate(f"[{ref}, '2026-02-01', 'Full').location]", at) == "westeurope"


def test_reference_to_what_is_not_deployed_yet_stays_an_expression_in_preflight():
    """ARM validates a template before its resources exist: what reads them stays unevaluated,
    the rest is evaluated."""
    expression = "[concat('x-', reference('/no/such').principalId)]"
    at = Scope(SUBSCRIPTION, "rg", "westeurope", "dep", {}, {}, preflight=True)
    assert evaluate({"a": expression, "b": "[toLower('B')]"}, at) == {"a": expression, "b": "b"}
    with pytest.raises(TemplateError, match="'/no/such' is not defined in the template"):
        evaluate(expression, scope())


def test_subscription_gives_its_tenant():
    tenant = "72f988bf-86f1-41af-91ab-2d7cd011db47"
    at = Scope(SUBSCRIPTION, "rg", "westeurope", "dep", {}, {}, tenant_id=tenant)
    assert evaluate("[subscription().tenantId]", at) == tenant
