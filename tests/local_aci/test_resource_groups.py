"""Local ACI's resource group and role definition answers on the wire, as Azure's REST specs give
them (Microsoft.Resources resources.json: ResourceGroups_CheckExistence, _Get, _CreateOrUpdate,
_Delete; Microsoft.Authorization: RoleDefinitions_Delete): status codes, the long-running
deletion's Location, ARM's error codes, and each request's action checked against the caller's
real role assignment. Requests go to the app as the deployer, with a token from local ACI's own
identity endpoint."""

import pytest
from azure.identity import ManagedIdentityCredential

from prefect_aci.local_aci.app import MANAGEMENT
from prefect_aci.local_aci.authorization import OWNER, READER, assignment, definition_id
from prefect_aci.local_aci.groups import DeleteOperation, Group
from prefect_aci.local_aci.resources import ROLE_DEFINITIONS, Context
from tests.local_aci.arm_helpers import DEPLOYER, GROUP, GROUP_ID, SUBSCRIPTION, FakeGroups
from tests.local_azure_helpers import Local, local_azure, start_local

API = {"api-version": "2025-04-01"}
ROLE = "3a5a1c5e-8d7b-4e5f-9a1b-2c3d4e5f6a7b"
ROLE_ID = f"/subscriptions/{SUBSCRIPTION}/providers/{ROLE_DEFINITIONS}/{ROLE}"


class SlowGroups(FakeGroups):
    """Container groups whose deletion goes on until the test says ACI is done."""

    def begin_delete(self, group: Group, seconds: float) -> DeleteOperation:
        group.provisioning_state = "Deleting"
        return DeleteOperation("op", group.key, group.name, seconds)

    def finish_deletions(self) -> None:
        self.groups = {k: g for k, g in self.groups.items() if g.provisioning_state != "Deleting"}


def _started(tmp_path, monkeypatch, **kwargs) -> Local:
    local = start_local(tmp_path, **kwargs)
    for name, value in local.identity_env().items():
        monkeypatch.setenv(name, value)
    return local


def _call(local: Local, method: str, path: str, **kwargs):
    token = ManagedIdentityCredential().get_token(f"{MANAGEMENT}/.default").token
    return local.server.client.request(
        method, path, params=API, headers={"Authorization": f"Bearer {token}"}, **kwargs
    )


def _role(local: Local) -> None:
    role = {
        "type": ROLE_DEFINITIONS,
        "name": ROLE,
        "properties": {"roleName": "Prefect ACI worker (x)", "assignableScopes": [GROUP_ID]},
    }
    local.arm.store.record(role, Context(SUBSCRIPTION, GROUP, local.config.tenant_id, "d"))


def test_a_missing_group_is_not_found_until_a_put_creates_it(tmp_path, monkeypatch):
    local = _started(tmp_path, monkeypatch, config=local_azure(resource_group_exists=False))
    try:
        group = f"/subscriptions/{SUBSCRIPTION}/resourcegroups/{GROUP}"
        assert _call(local, "HEAD", group).status_code == 404
        missing = _call(local, "GET", group)
        deployments = _call(local, "GET", f"{group}/providers/Microsoft.Resources/deployments")
        no_location = _call(local, "PUT", group, json={})
        created = _call(local, "PUT", group, json={"location": "northeurope", "tags": {"a": "b"}})
        again = _call(local, "PUT", group, json={"location": "westus"})
        exists = _call(local, "HEAD", group).status_code
    finally:
        local.close()
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "ResourceGroupNotFound"
    assert deployments.json()["error"]["code"] == "ResourceGroupNotFound"
    assert (no_location.status_code, no_location.json()["error"]["code"]) == (
        400,
        "LocationRequired",
    )
    assert created.status_code == 201
    assert created.json()["location"] == "northeurope"
    assert created.json()["tags"] == {"a": "b"}
    assert created.json()["id"] == GROUP_ID
    assert (again.status_code, again.json()["location"]) == (200, "northeurope")
    assert exists == 204


def test_group_deletion_runs_until_its_container_groups_are_gone(tmp_path, monkeypatch):
    groups = SlowGroups([])
    local = _started(tmp_path, monkeypatch, groups=groups)
    try:
        local.add_group("run-1", {"c": {}})
        _role(local)
        group = f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{GROUP}"
        accepted = _call(local, "DELETE", group)
        location = accepted.headers["Location"]
        running = _call(local, "GET", location.removeprefix(MANAGEMENT).split("?")[0])
        deleting = _call(local, "GET", group).json()["properties"]["provisioningState"]
        groups.finish_deletions()
        done = _call(local, "GET", location.removeprefix(MANAGEMENT).split("?")[0])
        gone = _call(local, "GET", group)
    finally:
        local.close()
    assert accepted.status_code == 202
    assert location.startswith(f"{MANAGEMENT}/subscriptions/{SUBSCRIPTION}/operationresults/")
    assert running.status_code == 202 and running.headers["Location"] == location
    assert deleting == "Deleting"
    assert done.status_code == 200
    assert gone.json()["error"]["code"] == "ResourceGroupNotFound"
    # A role definition lives at the subscription: the group's deletion leaves it.
    assert local.arm.store.get(ROLE_ID) is not None


@pytest.mark.parametrize(
    ("path", "action"),
    [
        (
            f"/subscriptions/{SUBSCRIPTION}/resourcegroups/{GROUP}",
            "Microsoft.Resources/subscriptions/resourceGroups/delete",
        ),
        (ROLE_ID, "Microsoft.Authorization/roleDefinitions/delete"),
    ],
)
def test_a_reader_may_not_delete(tmp_path, monkeypatch, path, action):
    local = _started(tmp_path, monkeypatch, config=local_azure(role=READER))
    try:
        _role(local)
        refused = _call(local, "DELETE", path)
    finally:
        local.close()
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "AuthorizationFailed"
    assert f"'{action}'" in refused.json()["error"]["message"]
    assert local.arm.store.get(ROLE_ID) is not None


def test_a_role_definition_is_deleted_with_its_body(tmp_path, monkeypatch):
    """The deployer holds Owner on the group only: the role's assignable scope."""
    local = _started(tmp_path, monkeypatch)
    try:
        _role(local)
        deleted = _call(local, "DELETE", ROLE_ID)
    finally:
        local.close()
    assert deleted.status_code == 200
    assert deleted.json()["id"] == ROLE_ID
    assert deleted.json()["properties"]["roleName"] == "Prefect ACI worker (x)"
    assert local.arm.store.get(ROLE_ID) is None


def test_a_role_definition_that_is_not_there_is_no_content(tmp_path, monkeypatch):
    """With no role to read assignable scopes from, the delete is checked where it is asked:
    the subscription."""
    owner = assignment(
        DEPLOYER, definition_id(SUBSCRIPTION, OWNER), f"/subscriptions/{SUBSCRIPTION}"
    )
    local = _started(tmp_path, monkeypatch, config=local_azure(role_assignments=[owner]))
    try:
        gone = _call(local, "DELETE", ROLE_ID)
    finally:
        local.close()
    assert gone.status_code == 204
