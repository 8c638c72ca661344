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
    [worker] = [r for r in template["resources"] if r["type"].endswith("containerGroups")]
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
