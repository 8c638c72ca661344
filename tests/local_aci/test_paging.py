"""Local ACI's lists come in pages as Azure's do (`nextLink`, an absolute URL with a
`$skiptoken`, on every page but the last): azure-mgmt-containerinstance's and
azure-mgmt-resource's own pagers follow them over a loopback socket to the end, signed in as
the deployer, who holds Owner on the resource group."""

import datetime
import urllib.parse

import pytest
from azure.identity import ManagedIdentityCredential
from azure.mgmt.containerinstance import ContainerInstanceManagementClient
from azure.mgmt.resource import ResourceManagementClient

from prefect_aci.local_aci.app import MANAGEMENT
from prefect_aci.local_aci.resources import IDENTITIES, Context
from tests.local_aci.arm_helpers import GROUP, GROUP_ID, SUBSCRIPTION, TENANT
from tests.local_azure_helpers import local_azure, start_local

PAGE = 2


@pytest.fixture
def local(tmp_path, monkeypatch):
    found = start_local(tmp_path, local_azure(list_page_size=PAGE))
    for name, value in found.identity_env().items():
        monkeypatch.setenv(name, value)
    yield found
    found.close()


def list_requests(local, collection: str) -> list:
    return [r for r in local.of("GET", collection) if r.path.lower().endswith(collection.lower())]


def test_container_groups_come_in_pages_that_the_sdks_pager_follows(local):
    names = [f"group-{i}" for i in range(5)]
    for name in reversed(names):
        local.add_group(name, {"job": {}})
    client = ContainerInstanceManagementClient(
        ManagedIdentityCredential(), SUBSCRIPTION, transport=local.transport()
    )
    listed = [g.name for g in client.container_groups.list_by_resource_group(GROUP)]
    assert listed == names
    pages = list_requests(local, "/containerGroups")
    assert len(pages) == 3  # 2 + 2 + 1
    assert ["$skiptoken" in r.query for r in pages] == [False, True, True]
    assert all(r.query["api-version"] for r in pages)


def test_deployments_come_in_pages_that_the_sdks_pager_follows(local):
    names = [f"prefect-run-{i}" for i in range(4)]
    for name in names:
        local.add_deployment(name, datetime.datetime.now(datetime.UTC))
    client = ResourceManagementClient(
        ManagedIdentityCredential(), SUBSCRIPTION, transport=local.transport()
    )
    listed = [d.name for d in client.deployments.list_by_resource_group(GROUP)]
    assert listed == names
    assert len(list_requests(local, "/deployments/")) == 2  # 2 + 2, the last without nextLink


def _token(local) -> dict:
    token = ManagedIdentityCredential().get_token(f"{MANAGEMENT}/.default").token
    return {"Authorization": f"Bearer {token}"}


def test_a_page_names_the_next_with_an_absolute_link_and_the_last_names_none(local):
    context = Context(SUBSCRIPTION, GROUP, TENANT, "d")
    for i in range(3):
        identity = {"type": IDENTITIES, "name": f"id-{i}", "location": "westeurope"}
        local.arm.store.record({**identity, "properties": {}}, context)
    collection = f"{GROUP_ID}/providers/{IDENTITIES}"
    query = {"api-version": "2023-01-31"}
    first = local.server.client.get(collection, params=query, headers=_token(local)).json()
    assert [r["name"] for r in first["value"]] == ["id-0", "id-1"]
    link = urllib.parse.urlsplit(first["nextLink"])
    assert f"{link.scheme}://{link.netloc}" == MANAGEMENT
    assert link.path == collection
    next_query = dict(urllib.parse.parse_qsl(link.query))
    assert next_query["api-version"] == "2023-01-31" and next_query["$skiptoken"]
    last = local.server.client.get(collection, params=next_query, headers=_token(local)).json()
    assert [(r["id"], r["name"]) for r in last["value"]] == [(f"{collection}/id-2", "id-2")]
    assert "nextLink" not in last


def test_a_list_that_fits_one_page_has_no_next_link(local):
    local.add_group("only", {"job": {}})
    answer = local.server.client.get(
        f"{GROUP_ID}/providers/Microsoft.ContainerInstance/containerGroups",
        params={"api-version": "2023-05-01"},
        headers=_token(local),
    )
    assert answer.status_code == 200
    assert [g["name"] for g in answer.json()["value"]] == ["only"]
    assert "nextLink" not in answer.json()


def test_a_skip_token_the_list_never_gave_is_refused(local):
    answer = local.server.client.get(
        f"{GROUP_ID}/providers/Microsoft.Resources/deployments",
        params={"api-version": "2024-03-01", "$skiptoken": "not*base64"},
        headers=_token(local),
    )
    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == "InvalidSkipToken"


def test_an_item_deleted_between_pages_moves_nothing(local):
    for name in ("a", "b", "c", "d"):
        local.add_group(name, {"job": {}})
    collection = f"{GROUP_ID}/providers/Microsoft.ContainerInstance/containerGroups"
    query = {"api-version": "2023-05-01"}
    first = local.server.client.get(collection, params=query, headers=_token(local)).json()
    assert [g["name"] for g in first["value"]] == ["a", "b"]
    local.groups.groups.pop(f"{GROUP}/b".lower())
    next_query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(first["nextLink"]).query))
    rest = local.server.client.get(collection, params=next_query, headers=_token(local)).json()
    assert [g["name"] for g in rest["value"]] == ["c", "d"]
