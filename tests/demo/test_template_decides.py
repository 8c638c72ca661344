"""The ARM template decides what runs: on the stack `make demo` deployed with `deploy-all`, a change
to the template's roles (or to what it assigned) makes the demo run fail with Azure's own error,
through the real worker, and putting the template back makes it work again.

Each change is made as on Azure: the template redeployed with one action fewer in the worker role
(an Incremental deployment updates the role), or a role assignment deleted by id (an Incremental
deployment never removes one, so a user deletes it, as `az role assignment delete` does); each is
put back before the test ends (the template redeployed, the assignment recreated)."""

import copy
import json
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from azure.mgmt.resource import ResourceManagementClient
from azure.mgmt.resource.resources.models import GenericResource

from arm.deploy import DEPLOYMENT_NAME, TEMPLATE, load_template
from prefect_aci.demo import flow_run
from prefect_aci.local_aci.authorization import ASSIGN_IDENTITY
from tests.demo.conftest import Stack

ROLE_API = "2022-04-01"
IDENTITY_API = "2024-11-30"
DEPLOY_DEPLOYMENTS = "Microsoft.Resources/deployments/write"


def arm(stack: Stack) -> ResourceManagementClient:
    """Resource Manager as the deployer, through the stack's door."""
    return ResourceManagementClient(
        stack.credential(),
        stack.side.config.subscription_id,
        base_url=stack.local_aci,
        connection_verify=str(stack.side.tls.bundle),
    )


def redeploy(stack: Stack, template: dict) -> None:
    """``template`` deployed as deploy-all deployed the template last (its parameters, the secure
    ones given again), leaving the worker's container group as it is."""
    client = arm(stack)
    group = stack.record.resource_group
    last = client.deployments.get(group, DEPLOYMENT_NAME).properties.parameters
    parameters = {k: {"value": v["value"]} for k, v in last.items() if "value" in v}
    parameters |= {
        "demoSecretValue": {"value": stack.demo_secret()},
        "deployWorker": {"value": False},
    }
    body = {"properties": {"mode": "Incremental", "template": template, "parameters": parameters}}
    result = client.deployments.begin_create_or_update(group, DEPLOYMENT_NAME, body).result(
        timeout=120
    )
    assert result.properties.provisioning_state == "Succeeded"


@contextmanager
def worker_role_without(stack: Stack, action: str) -> Iterator[None]:
    template = load_template(TEMPLATE)
    changed = copy.deepcopy(template)
    [holding] = [
        name
        for name in ("workerActions", "workerLinkedActions")
        if action in changed["variables"][name]
    ]
    changed["variables"][holding].remove(action)
    redeploy(stack, changed)
    try:
        yield
    finally:
        redeploy(stack, template)


def assignments_at(stack: Stack, scope: str) -> list[dict]:
    """The role assignments at ``scope``, listed as `az role assignment list --scope` does."""
    token = stack.credential().get_token("https://management.azure.com/.default").token
    request = urllib.request.Request(  # noqa: S310 (https, loopback)
        f"{stack.local_aci}{scope}/providers/Microsoft.Authorization/roleAssignments"
        f"?api-version={ROLE_API}",
        headers={"Authorization": f"Bearer {token}"},
    )
    with urllib.request.urlopen(request, context=stack.tls_context(), timeout=30) as answer:  # noqa: S310
        return json.loads(answer.read())["value"]


def job_assignment_on_vault(stack: Stack) -> dict:
    """The job identity's role assignment on the vault itself (the list also holds those of the
    scopes above it, such as the scheduled sweep's on the resource group)."""
    job = arm(stack).resources.get_by_id(stack.record.job_identity_id, IDENTITY_API)
    vault = vault_id(stack)
    [on_vault] = [
        a
        for a in assignments_at(stack, vault)
        if a["properties"]["principalId"] == job.properties["principalId"]
        and a["properties"]["scope"].lower() == vault.lower()
    ]
    return on_vault


def vault_id(stack: Stack) -> str:
    record = stack.record
    return (
        f"/subscriptions/{record.subscription_id}/resourceGroups/{record.resource_group}"
        f"/providers/Microsoft.KeyVault/vaults/{record.key_vault_name}"
    )


@contextmanager
def without_assignment(stack: Stack, assignment: dict) -> Iterator[None]:
    client = arm(stack)
    client.resources.begin_delete_by_id(assignment["id"], ROLE_API).result(timeout=60)
    try:
        yield
    finally:
        properties = {
            k: assignment["properties"][k]
            for k in ("roleDefinitionId", "principalId", "principalType")
        }
        client.resources.begin_create_or_update_by_id(
            assignment["id"], ROLE_API, GenericResource(properties=properties)
        ).result(timeout=60)


def demo_run(stack: Stack, **parameters) -> flow_run.DemoRun:
    return flow_run.run(stack.api, parameters or None, auth_string=stack.auth_string())


def said(run: flow_run.DemoRun) -> str:
    return "\n".join([run.message or "", *run.logs])


def test_without_the_job_identitys_key_vault_role_the_run_fails_forbidden_by_rbac(stack):
    on_vault = job_assignment_on_vault(stack)
    with without_assignment(stack, on_vault):
        run = demo_run(stack, rbac_wait_seconds=0)
    assert run.state == "FAILED", said(run)
    assert "ForbiddenByRbac" in said(run)
    # The template's assignment back, the same run reads the vault again.
    again = demo_run(stack, rbac_wait_seconds=0)
    assert again.state == "COMPLETED", said(again)


@pytest.mark.parametrize(
    ("action", "code"),
    [
        (DEPLOY_DEPLOYMENTS, "AuthorizationFailed"),
        (ASSIGN_IDENTITY, "LinkedAuthorizationFailed"),
    ],
)
def test_without_an_action_of_the_worker_role_the_run_is_refused_with_azures_error(
    stack, action, code
):
    with worker_role_without(stack, action):
        run = demo_run(stack)
    # The worker could not submit the run: Prefect's worker marks it Crashed with ARM's error.
    assert run.state == "CRASHED", said(run)
    assert code in said(run) and action in said(run)
    again = demo_run(stack)
    assert again.state == "COMPLETED", said(again)


def test_with_role_assignments_slow_to_take_effect_the_first_run_waits_and_completes(stack):
    """Azure's role assignments are eventually consistent: with a delay, an assignment made just
    now does not count yet. The flow retries Key Vault's ForbiddenByRbac (rbac_wait_seconds) and
    completes once the job identity's role takes effect."""
    on_vault = job_assignment_on_vault(stack)
    with stack.changed(role_assignment_delay_seconds=20):
        with without_assignment(stack, on_vault):
            pass  # made again on the way out: it counts 20 s from now
        run = demo_run(stack, rbac_wait_seconds=120)
    assert run.state == "COMPLETED", said(run)
    assert any("ForbiddenByRbac" in line and "retrying" in line for line in run.logs), run.logs


def test_a_flow_run_cannot_run_as_the_workers_identity(stack):
    """A flow run's job variables name the worker's identity and another resource group: the
    pool fixes who a run is and where it runs, so the run is the job identity's, as always (and
    the worker could not put its own identity on a group: LinkedAuthorizationFailed)."""
    record = stack.record
    run = flow_run.run(
        stack.api,
        job_variables={
            "identities": [record.worker_identity_id],
            "resource_group_name": "somewhere-else",
        },
        auth_string=stack.auth_string(),
    )
    assert run.state == "COMPLETED", said(run)
    assert any(f"as {record.job_identity_client_id}" in line for line in run.logs), run.logs
    assert not any(record.worker_identity_client_id in line for line in run.logs)
