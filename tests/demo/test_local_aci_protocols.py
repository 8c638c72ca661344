"""Local ACI speaks Azure's protocols to clients that get them wrong, too: Azure's error shapes and
status codes, never a traceback page; a managed identity gets tokens for its own client id only."""

import json
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest
from azure.mgmt.containerinstance.models import ContainerGroup

from tests.demo.conftest import Stack

API = "api-version=2023-05-01"


def call(stack: Stack, path: str, method="GET", body=None, token=True, host=None):
    """(status, JSON body, headers) of a request to local ACI's door, as ``host`` would get it."""
    headers = {"Host": host or "management.azure.com", "Content-Type": "application/json"}
    if token:
        audience = (
            "https://vault.azure.net"
            if host and "vault" in host
            else "https://management.azure.com"
        )
        headers["Authorization"] = f"Bearer {stack.credential().get_token(audience).token}"
    request = urllib.request.Request(  # noqa: S310 (https, loopback)
        f"{stack.local_aci}{path}",
        data=body if isinstance(body, bytes) or body is None else json.dumps(body).encode(),
        headers=headers,
        method=method,
    )
    try:
        with urllib.request.urlopen(request, context=stack.tls_context(), timeout=30) as answer:  # noqa: S310
            return answer.status, json.loads(answer.read() or b"null"), answer.headers
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null"), error.headers


def group_path(stack: Stack, name: str = "") -> str:
    base = (
        f"/subscriptions/{stack.side.config.subscription_id}/resourceGroups/"
        f"{stack.record.resource_group}/providers/Microsoft.ContainerInstance/containerGroups"
    )
    return f"{base}/{name}?{API}" if name else f"{base}?{API}"


def deployment_path(stack: Stack, name: str) -> str:
    return (
        f"/subscriptions/{stack.side.config.subscription_id}/resourcegroups/"
        f"{stack.record.resource_group}/providers/Microsoft.Resources/deployments/{name}?{API}"
    )


def error_code(body) -> str:
    assert isinstance(body, dict) and set(body) == {"error"}, body
    assert body["error"]["message"], body
    return body["error"]["code"]


def test_no_token_is_401_with_a_bearer_challenge(stack):
    status, body, headers = call(stack, group_path(stack, "x"), token=False)
    assert status == 401 and error_code(body) == "InvalidAuthenticationToken"
    assert headers["WWW-Authenticate"].startswith("Bearer authorization_uri=")


@pytest.mark.parametrize(
    ("path", "status", "code"),
    [
        ("UNKNOWN_PROVIDER", 404, "InvalidResourceType"),
        ("GROUP_NO_API_VERSION", 400, "MissingApiVersionParameter"),
        ("MISSING_GROUP", 404, "ResourceNotFound"),
        ("OTHER_SUBSCRIPTION", 404, "SubscriptionNotFound"),
    ],
)
def test_wrong_requests_get_azures_error_shapes(stack, path, status, code):
    sub = stack.side.config.subscription_id
    path = {
        "UNKNOWN_PROVIDER": group_path(stack, "x").split("/providers/")[0]
        + "/providers/Microsoft.Nope/z?api-version=1",
        "GROUP_NO_API_VERSION": group_path(stack, "x").split("?")[0],
        "MISSING_GROUP": group_path(stack, "no-such-group"),
        "OTHER_SUBSCRIPTION": group_path(stack, "x").replace(
            sub, "00000000-0000-0000-0000-000000000000"
        ),
    }.get(path, path)
    got, body, _ = call(stack, path)
    assert (got, error_code(body)) == (status, code)


def test_malformed_json_is_400_invalid_request_content(stack):
    status, body, _ = call(stack, deployment_path(stack, "bad-json"), "PUT", b"{not json")
    assert status == 400 and error_code(body) == "InvalidRequestContent"


def test_an_unsupported_template_function_is_invalid_template_naming_it(stack):
    template = {
        "$schema": "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#",
        "contentVersion": "1.0.0.0",
        "resources": [
            {
                "type": "Microsoft.ContainerInstance/containerGroups",
                "apiVersion": "2022-09-01",
                "name": "[listKeys('x', '1')]",
            }
        ],
    }
    status, body, _ = call(
        stack,
        deployment_path(stack, "bad-function"),
        "PUT",
        {"properties": {"mode": "Incremental", "template": template}},
    )
    assert status == 400 and error_code(body) == "InvalidTemplate"
    assert "'listKeys' is not supported" in body["error"]["message"]


def test_key_vault_challenges_then_refuses_an_identity_without_the_role(stack):
    vault = urllib.parse.urlsplit(stack.record.key_vault_uri).hostname
    status, body, headers = call(
        stack, "/secrets/prefect-aci-demo-secret?api-version=7.5", token=False, host=vault
    )
    assert status == 401 and 'resource="https://vault.azure.net"' in headers["WWW-Authenticate"]
    # The deployer owns the resource group but holds no Key Vault data role: RBAC says no.
    status, body, _ = call(stack, "/secrets/prefect-aci-demo-secret?api-version=7.5", host=vault)
    assert status == 403 and body["error"]["innererror"]["code"] == "ForbiddenByRbac"


def test_imds_gives_a_group_tokens_for_its_own_identity_only(stack):
    """A container group with the job identity asks IMDS for its own client id, then the
    worker's: the first is a token, the second 'Identity not found'."""
    config, record = stack.side.config, stack.record
    probe = (
        "import json, urllib.request, urllib.error\n"
        "def ask(client):\n"
        "    url = ('http://169.254.169.254/metadata/identity/oauth2/token?api-version=2018-02-01'\n"
        "           '&resource=https://vault.azure.net&client_id=' + client)\n"
        "    request = urllib.request.Request(url, headers={'Metadata': 'true'})\n"
        "    try:\n"
        "        with urllib.request.urlopen(request, timeout=10) as answer:\n"
        "            return answer.status, 'access_token' in json.loads(answer.read())\n"
        "    except urllib.error.HTTPError as error:\n"
        "        return error.code, json.loads(error.read())['error_description']\n"
        f"print('own', *ask('{record.job_identity_client_id}'))\n"
        f"print('worker', *ask('{record.worker_identity_client_id}'))\n"
    )
    group = ContainerGroup.deserialize(
        {
            "location": config.location,
            "identity": {
                "type": "UserAssigned",
                "userAssignedIdentities": {record.job_identity_id: {}},
            },
            "properties": {
                "osType": "Linux",
                "restartPolicy": "Never",
                "subnetIds": [{"id": record.subnet_id}],
                "containers": [
                    {
                        "name": "probe",
                        "properties": {
                            "image": stack.image(),
                            "command": ["python", "-c", probe],
                            "resources": {"requests": {"cpu": 0.5, "memoryInGB": 0.5}},
                        },
                    }
                ],
            },
        }
    )
    aci = stack.aci()
    aci.container_groups.begin_create_or_update(record.resource_group, "imds-probe", group).result()
    try:
        deadline = time.monotonic() + 120
        while True:
            state = aci.container_groups.get(record.resource_group, "imds-probe").containers[0]
            if state.instance_view.current_state.state == "Terminated":
                break
            assert time.monotonic() < deadline, "the probe did not finish"
            time.sleep(2)
        logs = aci.containers.list_logs(record.resource_group, "imds-probe", "probe").content
    finally:
        aci.container_groups.begin_delete(record.resource_group, "imds-probe").result()
    assert "own 200 True" in logs, logs
    assert "worker 400 Identity not found" in logs, logs
