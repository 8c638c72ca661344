"""Standby pools with running members: local ACI's pools controller keeps members of a profile
revision running as Docker containers, a claim (azure-mgmt-resource's generic PUT at 2025-09-01)
takes a Running one with its identity and config map, the pool refills, a profile change drains
and replaces, and config map files change in place without a restart.

The members run a tiny image built here (dash, sleep and cat on an empty base); every container
and network these tests make carries the stack's label and goes at the end."""

import contextlib
import json
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import pytest
from azure.core.exceptions import HttpResponseError
from azure.identity import ManagedIdentityCredential
from docker.errors import NotFound
from starlette.requests import Request

from prefect_aci.local_aci.app import MANAGEMENT, LocalAci
from prefect_aci.local_aci.config import LABEL, Wiring
from prefect_aci.local_aci.groups import Groups
from prefect_aci.local_aci.resource_manager import ResourceManager
from prefect_aci.local_aci.resources import ResourceStore
from prefect_aci.local_aci.standby import MEMBERS, StandbyPools
from prefect_aci.local_aci.tokens import TokenIssuer, make_signing_key
from tests.local_aci.arm_helpers import GROUP, GROUP_ID, SCHEMAS
from tests.local_aci.standby_helpers import (
    ACI_CONTRIBUTOR,
    CONTAINER,
    GROUPS_API,
    POOL_CONTRIBUTOR,
    POOL_ID,
    POOLS_API,
    PROFILE_ID,
    PROFILES_API,
    claim,
    counts,
    group_id,
    pool,
    profile,
    resources,
)
from tests.local_azure_helpers import DEPLOYER_SECRET, Local, LocalAciServer, local_azure

# Every wait of these tests is bounded by this (a member starts in about a second).
WAIT_SECONDS = 60
COMMAND = ["/bin/sleep", "600"]
SECRET = "pnu_standby-secret"


@pytest.fixture(scope="module")
def tiny_image(docker_client, tmp_path_factory) -> str:
    """An image with /bin/sh, sleep and cat and the C library they need, nothing else."""
    root = tmp_path_factory.mktemp("tiny-image")
    rootfs = root / "rootfs"
    programs = {"/bin/dash": "/bin/sh", "/bin/sleep": "/bin/sleep", "/bin/cat": "/bin/cat"}
    libraries = set()
    for program in programs:
        listed = subprocess.run(["ldd", program], capture_output=True, text=True, check=True)
        for line in listed.stdout.splitlines():
            path = next((p for p in line.split() if p.startswith("/")), None)
            if path:
                libraries.add(path)
    for source, target in [*programs.items(), *((lib, lib) for lib in libraries)]:
        destination = rootfs / target.lstrip("/")
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(Path(source).resolve(), destination)
    (root / "Dockerfile").write_text("FROM scratch\nCOPY rootfs/ /\n")
    tag = f"prefect-aci-standby-tests:{uuid.uuid4().hex[:12]}"
    docker_client.images.build(path=str(root), tag=tag, rm=True)
    yield tag
    docker_client.images.remove(tag, force=True)


@pytest.fixture
def stack(tmp_path, docker_client, tiny_image, monkeypatch):
    """Local ACI with real container groups, its pools controller running, the Standby Pool
    Resource Provider holding ACI Contributor and Standby Container Group Pool Contributor on
    the resource group (what Microsoft's "configure permissions" page suggests, in part)."""
    stack_id = f"standby-tests-{uuid.uuid4().hex[:8]}"
    network = docker_client.networks.create(stack_id, labels={f"{LABEL}.stack": stack_id})
    imds = docker_client.networks.create(f"{stack_id}-imds", labels={f"{LABEL}.stack": stack_id})
    ca = tmp_path / "ca.pem"
    ca.write_text("")
    config = local_azure(
        wiring=Wiring(
            stack_id=stack_id,
            network=network.name,
            imds_network=imds.name,
            extra_hosts={},
            ca_bundle_host_path=str(ca),
            config_maps_folder=str(tmp_path / "config-maps"),
        )
    )
    store = ResourceStore()
    groups = Groups(docker_client, config, store)
    arm = ResourceManager(config.subscription_id, groups, SCHEMAS, config.tenant_id, store)
    standby = StandbyPools(config, groups, store, tick_seconds=0.2).start()
    make_signing_key(tmp_path / "signing-key.pem")
    issuer = TokenIssuer(tmp_path / "signing-key.pem", config.tenant_id)
    aci = LocalAci(config, groups, arm, issuer, DEPLOYER_SECRET, standby)
    local = Local(config, groups, arm, LocalAciServer(aci), issuer)  # type: ignore[arg-type]
    local.aci = aci  # type: ignore[attr-defined]  (IMDS is asked of it directly)
    for name, value in local.identity_env().items():
        monkeypatch.setenv(name, value)
    provider = config.standby_pool_provider_principal_id
    local.add_role_assignment(provider, ACI_CONTRIBUTOR, GROUP_ID)
    local.add_role_assignment(provider, POOL_CONTRIBUTOR, GROUP_ID)
    yield local, standby
    standby.stop()
    local.close()
    labelled = {"label": [f"{LABEL}.stack={stack_id}"]}
    for container in docker_client.containers.list(all=True, filters=labelled):
        with contextlib.suppress(NotFound):
            container.remove(force=True)
    network.remove()
    imds.remove()


@pytest.fixture
def client(stack):
    return resources(ManagedIdentityCredential(), stack[0].transport())


def _view(local) -> dict:
    token = ManagedIdentityCredential().get_token(f"{MANAGEMENT}/.default").token
    answer = local.server.client.get(
        f"{POOL_ID}/runtimeViews/latest",
        params={"api-version": POOLS_API},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert answer.status_code == 200, answer.text
    return answer.json()


def _until(check, what: str):
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError(f"not within {WAIT_SECONDS} s: {what}")


def _running(local, wanted: int) -> dict:
    return _until(
        lambda: (v := _view(local)) and counts(v)["Running"] == wanted and v,
        f"{wanted} running members",
    )


def _members(local) -> list:
    return local.groups.all_in(f"{MEMBERS}warm-pool")


def _container(docker_client, group):
    [found] = docker_client.containers.list(
        all=True, filters={"label": [f"{LABEL}.group={group.docker_key}"]}
    )
    return found


def _read(container, key: str) -> str:
    code, output = container.exec_run(["/bin/cat", f"/mnt/configmap/{CONTAINER}/{key}"])
    assert code == 0, output
    return output.decode()


def _setup(client, tiny_image: str, capacity: int) -> None:
    definition = profile(tiny_image, COMMAND)
    definition.properties["containers"][0]["properties"]["environmentVariables"] = [
        {"name": "PREFECT_API_KEY", "secureValue": SECRET}
    ]
    client.resources.begin_create_or_update_by_id(PROFILE_ID, PROFILES_API, definition).result()
    client.resources.begin_create_or_update_by_id(POOL_ID, POOLS_API, pool(capacity)).result()


def test_a_pool_keeps_its_capacity_running_and_members_are_not_the_groups(
    stack, client, tiny_image, docker_client
):
    local, _ = stack
    _setup(client, tiny_image, 2)
    _running(local, 2)
    assert len(_members(local)) == 2
    listed = list(client.resources.list_by_resource_group(GROUP))
    assert not [r for r in listed if r.type.endswith("containerGroups")]
    for member in _members(local):
        state = _container(docker_client, member).attrs["State"]
        assert state["Running"], state


def test_a_claim_takes_a_running_member_with_its_identity_and_config_map_and_the_pool_refills(
    stack, client, tiny_image, docker_client
):
    local, _ = stack
    _setup(client, tiny_image, 1)
    _running(local, 1)
    [member] = _members(local)
    before = _container(docker_client, member)
    job = local.add_identity("job")
    values = {"PREFECT__FLOW_RUN_ID": "0b0e4d1c-run", "PREFECT_LOGGING_LEVEL": "DEBUG"}
    client.resources.begin_create_or_update_by_id(
        group_id("run-1"), GROUPS_API, claim(values, job.resource_id)
    ).result()
    got = client.resources.get_by_id(group_id("run-1"), GROUPS_API)
    assert got.properties["isCreatedFromStandbyPool"] is True
    assert got.properties["instanceView"]["state"] == "Running"
    assert got.properties["containers"][0]["properties"]["configMap"]["keyValuePairs"] == values
    assert got.properties["containers"][0]["properties"]["command"] == COMMAND
    assert SECRET not in json.dumps(got.serialize())
    claimed = local.groups.get(GROUP, "run-1")
    assert claimed is member  # the member became the group, nothing new started
    assert f"PREFECT_API_KEY={SECRET}" in before.attrs["Config"]["Env"]
    assert _container(docker_client, claimed).id == before.id
    for key, value in values.items():
        assert _read(before, key) == value
    # IMDS answers the caller at the member's address with the claimed identity's tokens.
    before.reload()
    address = before.attrs["NetworkSettings"]["Networks"][local.config.wiring.imds_network]
    assert local.groups.identities_of_address(address["IPAddress"]) == [job.resource_id]
    asked = Request(
        {
            "type": "http",
            "method": "GET",
            "path": "/metadata/identity/oauth2/token",
            "query_string": b"api-version=2018-02-01&resource=https://vault.azure.net",
            "headers": [(b"metadata", b"true")],
            "client": (address["IPAddress"], 40000),
        }
    )
    answer = local.aci.imds_token(asked)
    assert answer.status_code == 200, answer.body
    token = json.loads(answer.body)["access_token"]
    claims = local.issuer.verify(token, "https://vault.azure.net")
    assert claims is not None and claims["oid"] == job.principal_id
    # Refilled: a new member, Running, and the claimed group is no member.
    _running(local, 1)
    [refill] = _members(local)
    assert refill is not member
    names = {r.name for r in client.resources.list_by_resource_group(GROUP)}
    assert "run-1" in names and refill.name not in names


def test_a_config_map_change_rewrites_files_in_place_without_a_restart(
    stack, client, tiny_image, docker_client
):
    local, _ = stack
    _setup(client, tiny_image, 1)
    _running(local, 1)
    client.resources.begin_create_or_update_by_id(
        group_id("run-1"), GROUPS_API, claim({"KEY": "first", "GONE": "soon"})
    ).result()
    container = _container(docker_client, local.groups.get(GROUP, "run-1"))
    started = container.attrs["State"]["StartedAt"]
    assert _read(container, "KEY") == "first"
    client.resources.begin_create_or_update_by_id(
        group_id("run-1"), GROUPS_API, claim({"KEY": "second"})
    ).result()
    assert _read(container, "KEY") == "second"
    code, _ = container.exec_run(["/bin/cat", f"/mnt/configmap/{CONTAINER}/GONE"])
    assert code != 0
    container.reload()
    assert container.attrs["State"]["StartedAt"] == started
    assert container.attrs["RestartCount"] == 0 and container.attrs["State"]["Running"]
    got = client.resources.get_by_id(group_id("run-1"), GROUPS_API)
    shown = got.properties["containers"][0]["properties"]["configMap"]["keyValuePairs"]
    assert shown == {"KEY": "second"}


def test_deleting_a_claimed_group_removes_its_container_and_config_maps(
    stack, client, tiny_image, docker_client
):
    local, _ = stack
    _setup(client, tiny_image, 1)
    _running(local, 1)
    client.resources.begin_create_or_update_by_id(
        group_id("run-1"), GROUPS_API, claim({"A": "b"})
    ).result()
    claimed = local.groups.get(GROUP, "run-1")
    container = _container(docker_client, claimed)
    folder = Path(local.config.wiring.config_maps_folder) / claimed.docker_key.replace("/", "~")
    assert (folder / CONTAINER / "A").read_text() == "b"
    client.resources.begin_delete_by_id(group_id("run-1"), GROUPS_API).result()
    _until(lambda: local.groups.get(GROUP, "run-1") is None, "the claimed group deleted")
    with pytest.raises(NotFound):
        container.reload()
    assert not folder.exists()


def test_with_the_pool_empty_a_claim_creates_from_the_profile_or_fails_when_told(
    stack, client, tiny_image, docker_client
):
    local, _ = stack
    _setup(client, tiny_image, 0)
    with pytest.raises(HttpResponseError) as refused:
        client.resources.begin_create_or_update_by_id(
            group_id("run-1"), GROUPS_API, claim({"A": "b"}, fail_on_reuse_failure=True)
        ).result()
    assert refused.value.status_code == 409
    assert local.groups.get(GROUP, "run-1") is None
    client.resources.begin_create_or_update_by_id(
        group_id("run-2"), GROUPS_API, claim({"A": "cold"})
    ).result()
    got = client.resources.get_by_id(group_id("run-2"), GROUPS_API)
    assert got.properties["isCreatedFromStandbyPool"] is False
    container = _container(docker_client, local.groups.get(GROUP, "run-2"))
    assert _read(container, "A") == "cold"


def test_a_profile_change_drains_the_pool_and_replaces_its_members(
    stack, client, tiny_image, docker_client
):
    local, _ = stack
    _setup(client, tiny_image, 1)
    _running(local, 1)
    [old] = _members(local)
    changed = profile(tiny_image, ["/bin/sleep", "900"])
    client.resources.begin_create_or_update_by_id(PROFILE_ID, PROFILES_API, changed).result()

    def replaced():
        members = _members(local)
        fresh = [m for m in members if m is not old and m.provisioning_state == "Succeeded"]
        gone = local.groups.get(old.resource_group, old.name) is None
        return gone and fresh and counts(_view(local))["Running"] == 1 and fresh

    [new] = _until(replaced, "the revision 1 member replaced by a revision 2 one")
    assert new.spec["properties"]["containerGroupProfile"]["revision"] == 2
    command = new.spec["properties"]["containers"][0]["properties"]["command"]
    assert command == ["/bin/sleep", "900"]


def test_members_are_created_only_with_the_standby_pool_providers_roles(stack, client, tiny_image):
    local, _ = stack
    for recorded in local.arm.store.by_type("Microsoft.Authorization/roleAssignments"):
        local.arm.store.remove(recorded.id)
    _setup(client, tiny_image, 1)
    view = _until(
        lambda: (v := _view(local))["properties"]["status"]["code"] == "HealthState/degraded" and v,
        "the pool says why it is empty",
    )
    assert "AuthorizationFailed" in view["properties"]["status"]["message"]
    assert _members(local) == []
    provider = local.config.standby_pool_provider_principal_id
    local.add_role_assignment(provider, ACI_CONTRIBUTOR, GROUP_ID)
    local.add_role_assignment(provider, POOL_CONTRIBUTOR, GROUP_ID)
    assert counts(_running(local, 1))["Running"] == 1


def test_a_deleted_pool_drains_its_members(stack, client, tiny_image):
    local, _ = stack
    _setup(client, tiny_image, 2)
    _running(local, 2)
    client.resources.begin_delete_by_id(POOL_ID, POOLS_API).result()
    _until(lambda: not _members(local), "members of a deleted pool gone")


def test_a_restarted_stand_in_keeps_claimed_groups_claimed_and_members_in_their_pool(
    stack, client, tiny_image, docker_client
):
    local, _ = stack
    _setup(client, tiny_image, 1)
    _running(local, 1)
    [member] = _members(local)
    client.resources.begin_create_or_update_by_id(
        group_id("run-1"), GROUPS_API, claim({"A": "b"})
    ).result()
    _running(local, 1)
    [refill] = _members(local)
    # What a restarted stand-in finds: the containers, their labels and the state folder.
    again = Groups(docker_client, local.config, local.arm.store)
    claimed = again.get(GROUP, "run-1")
    assert claimed is not None and claimed.docker_key == member.docker_key
    assert claimed.spec["properties"]["isCreatedFromStandbyPool"] is True
    pools = StandbyPools(local.config, again, local.arm.store)
    pools.reconcile()
    [kept] = pools.pools[POOL_ID.lower()].members
    assert kept.group.name == refill.name
    assert [g.name for g in again.all_in(f"{MEMBERS}warm-pool")] == [refill.name]
