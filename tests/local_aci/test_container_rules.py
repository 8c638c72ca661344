"""Local ACI's container group rules beyond the schema (issue 18 item 4), fast and without
Docker: one test per rule with a valid and an invalid case (container_rules, pure), the groups
this project sends pass them all, and the provider state applies them (Groups with a fake Docker
client: the update and quota checks, the asynchronous DELETE) and lets a test change its settings
through the stack's door."""

import copy
import json
import time
import uuid
from decimal import Decimal
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from prefect_azure.workers.container_instance import AzureContainerWorker

from blocks.work_pool import CPU, MEMORY_GB
from prefect_aci.local_aci import container_rules as rules
from prefect_aci.local_aci.app import LocalAci, https_app
from prefect_aci.local_aci.config import LABEL, LocalAzure, Wiring
from prefect_aci.local_aci.groups import Group, GroupError, Groups

ROOT = Path(__file__).resolve().parents[2]
SUBNET = [{"id": "/subscriptions/s/resourceGroups/rg/providers/x/virtualNetworks/v/subnets/aci"}]


def _group(*requests: tuple, limits: tuple | None = None, **properties) -> dict:
    containers = []
    for i, (cpu, memory) in enumerate(requests):
        resources = {"requests": {"cpu": cpu, "memoryInGB": memory}}
        if limits:
            resources["limits"] = {"cpu": limits[0], "memoryInGB": limits[1]}
        containers.append({"name": f"c{i}", "properties": {"image": "x", "resources": resources}})
    return {"properties": {"osType": "Linux", "containers": containers, **properties}}


def _codes(problems) -> list[str]:
    return [problem.code for problem in problems]


# -- the rules, pure -----------------------------------------------------------------------------


def test_group_name_rule():
    for good in ("a", "prefect-worker", "a" * 63, "demo-" + str(uuid.uuid4())):
        assert rules.name_problems(good) == [], good
    for bad in ("", "a" * 64, "Prefect", "-a", "a-", "a--b", "a_b", "a.b"):
        assert _codes(rules.name_problems(bad)) == ["ContainerGroupNameInvalid"], bad


def test_memory_in_multiples_of_a_tenth_for_requests_and_limits_with_azures_message():
    assert rules.memory_problems("g", _group((1, 1.5), limits=(1, 1.5))) == []
    [problem] = rules.memory_problems("g", _group((1, 1.55)))
    assert problem.code == "InvalidMemoryRequirement" and problem.status == 400
    assert problem.message == (
        "The memory requirement is '1.55' in container 'c0' of container group 'g'. "
        "The memory requirement should be times of 0.1 GB."
    )
    assert _codes(rules.memory_problems("g", _group((1, 2), limits=(1, 0.25)))) == [
        "InvalidMemoryRequirement"
    ]


def test_a_container_limit_is_between_its_request_and_the_groups_total_request():
    assert rules.container_limit_problems("g", _group((1, 2), (1, 2), limits=(2, 4))) == []
    [low] = rules.container_limit_problems("g", _group((2, 2), limits=(1, 2)))
    assert low.code == "ResourceLimitsLessThanRequests"
    assert "The 'Cpu' limit value must be greater than or equal to the request value" in (
        low.message
    )
    [high] = rules.container_limit_problems("g", _group((1, 2), limits=(1, 3)))
    assert high.code == "ContainerLimitGreaterThanContainerGroupTotalRequest"
    assert high.message == (
        "The 'MemoryInGB' limit '3' in container 'c0' is greater than the total request '2' of "
        "container group 'g'."
    )


def test_group_requests_within_the_standard_linux_maxima_else_azures_capacity_error():
    assert rules.limit_problems("g", _group((2, 8), (2, 8))) == []
    [problem] = rules.limit_problems("g", _group((2, 8), (2.5, 1)), "westeurope")
    assert (problem.code, problem.status) == ("ServiceUnavailable", 409)
    assert problem.message.startswith(
        "The requested resource with '4.5' CPU and '9' GB memory is not available in the "
        "location 'westeurope' at this moment."
    )
    assert _codes(rules.limit_problems("g", _group((1, 16.1)))) == ["ServiceUnavailable"]


def test_hard_limits_containers_volumes_and_ports_per_group():
    assert rules.count_problems("g", _group(*[(0.1, 0.1)] * 60)) == []
    assert _codes(rules.count_problems("g", _group(*[(0.1, 0.1)] * 61))) == [
        "ContainerGroupLimitExceeded"
    ]
    volumes = [{"name": f"v{i}", "emptyDir": {}} for i in range(21)]
    assert "21 volumes" in rules.count_problems("g", _group((1, 1), volumes=volumes))[0].message
    ports = [{"port": 8000 + i} for i in range(6)]
    many = _group((1, 1), ipAddress={"type": "Private", "ports": ports})
    assert "6 ports" in rules.count_problems("g", many)[0].message


def test_public_ip_with_subnet_is_refused():
    private = _group((1, 2), ipAddress={"type": "Private", "ports": []}, subnetIds=SUBNET)
    public_alone = _group((1, 2), ipAddress={"type": "Public", "ports": []})
    assert rules.network_problems("g", private) == []
    assert rules.network_problems("g", public_alone) == []
    public = _group((1, 2), ipAddress={"type": "Public", "ports": []}, subnetIds=SUBNET)
    assert _codes(rules.network_problems("g", public)) == ["PublicIPAddressNotSupportedWithSubnet"]


@pytest.mark.parametrize(
    "change",
    [
        lambda b: b["properties"].update(osType="Windows"),
        lambda b: b["properties"].update(restartPolicy="Never"),
        lambda b: b["properties"].update(subnetIds=[{"id": SUBNET[0]["id"] + "2"}]),
        lambda b: b["properties"].update(ipAddress={"type": "Public", "ports": []}),
        lambda b: b["properties"]["containers"][0]["properties"]["resources"]["requests"].update(
            cpu=2
        ),
        lambda b: b["properties"]["containers"][0]["properties"]["resources"]["requests"].update(
            memoryInGB=3
        ),
        lambda b: b["properties"]["containers"][0]["properties"]["resources"]["requests"].update(
            gpu={"count": 1, "sku": "V100"}
        ),
        lambda b: b["properties"]["containers"].append(
            {"name": "c9", "properties": {"image": "x", "resources": {"requests": {"cpu": 1}}}}
        ),
    ],
    ids=["os", "restart", "subnet", "ip", "cpu", "memory", "gpu", "another-container"],
)
def test_an_update_of_what_aci_cannot_change_in_place_is_invalid(change):
    existing = _group((1, 2), restartPolicy="Always", subnetIds=SUBNET)
    body = copy.deepcopy(existing)
    change(body)
    [problem] = rules.update_problems("g", existing, body)
    assert problem.code == "InvalidContainerGroupUpdate"
    assert problem.message.startswith("The updates on container group 'g' are invalid.")


def test_an_update_of_the_image_or_environment_is_valid_and_defaults_count_as_given():
    existing = _group((1, 2), subnetIds=SUBNET)
    body = copy.deepcopy(existing)
    container = body["properties"]["containers"][0]["properties"]
    container.update(image="y", environmentVariables=[{"name": "A", "value": "1"}])
    body["properties"].update(restartPolicy="Always")  # ACI's default, now said
    body["properties"]["containers"][0]["properties"]["resources"]["requests"]["cpu"] = 1.0
    assert rules.update_problems("g", existing, body) == []


def test_the_regional_core_quota_counts_what_is_in_use():
    assert rules.quota_problems(_group((2, 1)), Decimal(98), 100) == []
    [problem] = rules.quota_problems(_group((2.5, 1)), Decimal(98), 100, "westus2")
    assert (problem.code, problem.status) == ("ContainerGroupQuotaReached", 409)
    assert problem.message == (
        "Resource type 'Microsoft.ContainerInstance/containerGroups' container group quota "
        "'StandardCores' exceeded in region 'westus2'. Limit: '100', Usage: '98' "
        "Requested: '2.5'."
    )


@pytest.mark.parametrize(
    ("variable", "name"),
    [("workerGroupName", "{0}-worker"), ("standbyWorkerGroupName", "{0}-standby-worker")],
)
def test_the_templates_worker_groups_pass_with_their_default_parameters(variable, name):
    """The worker's group, and the standby pool's worker's (deployed with a pool)."""
    template = json.loads((ROOT / "arm" / "azuredeploy.json").read_text())
    [group] = [
        r
        for r in template["resources"]
        if r["type"] == "Microsoft.ContainerInstance/containerGroups"
        and r["name"] == f"[variables('{variable}')]"
    ]
    defaults = {k: p.get("defaultValue") for k, p in template["parameters"].items()}
    # The three expressions the rules look at, resolved by hand from the parameter defaults.
    assert template["variables"][variable] == f"[format('{name}', parameters('prefix'))]"
    body = copy.deepcopy(group)
    requests = body["properties"]["containers"][0]["properties"]["resources"]["requests"]
    assert requests == {
        "cpu": "[json(parameters('workerCpu'))]",
        "memoryInGB": "[json(parameters('workerMemoryInGB'))]",
    }
    requests["cpu"] = json.loads(defaults["workerCpu"])
    requests["memoryInGB"] = json.loads(defaults["workerMemoryInGB"])
    assert rules.group_problems(name.format(defaults["prefix"]), body) == []
    # Redeploying it unchanged is a valid update (its containers restart).
    assert rules.update_problems("w", body, copy.deepcopy(body)) == []


def test_the_work_pools_flow_run_group_passes():
    template = AzureContainerWorker.get_default_base_job_template()
    [group] = template["job_configuration"]["arm_template"]["resources"]
    body = copy.deepcopy(group)
    requests = body["properties"]["containers"][0]["properties"]["resources"]["requests"]
    assert requests == {"cpu": "{{ cpu }}", "memoryInGB": "{{ memory }}"}
    requests.update(cpu=CPU, memoryInGB=MEMORY_GB)
    # The pool sets subnet_ids; prefect-azure then adds them and no public IP address.
    body["properties"]["subnetIds"] = [{"id": "/subscriptions/s/x/subnets/aci"}]
    # prefect-azure names a flow run's group "<slugified flow name, at most 19>-<flow run id>".
    name = f"key-vault-demo-{uuid.uuid4()}"
    assert rules.group_problems(name, body) == []


# -- the rules applied by the provider's state (Groups), without Docker --------------------------


class FakeContainer:
    def __init__(self, group_key: str, running: bool) -> None:
        self.labels = {f"{LABEL}.group": group_key, f"{LABEL}.container": "c0"}
        self.attrs = {"State": {"Running": running, "Status": "running" if running else "exited"}}
        self.removed = False

    def remove(self, force: bool = False) -> None:
        self.removed = True


class FakeDocker:
    """What Groups asks of Docker's client here: the stack's containers (filters ignored)."""

    def __init__(self) -> None:
        self.items: list[FakeContainer] = []
        self.containers = self

    def list(self, **kwargs) -> list[FakeContainer]:
        return [c for c in self.items if not c.removed]


def _config(**settings) -> LocalAzure:
    return LocalAzure(
        tenant_id=str(uuid.uuid4()),
        subscription_id=str(uuid.uuid4()),
        resource_group="rg",
        identities=[],
        admin_principal_id=str(uuid.uuid4()),
        wiring=Wiring(
            stack_id="s",
            network="n",
            imds_network="i",
            extra_hosts={},
            ca_bundle_host_path="/ca.pem",
        ),
        **settings,
    )


@pytest.fixture
def groups(monkeypatch) -> tuple[Groups, FakeDocker]:
    """Groups whose containers "start" at once: each start adds one running fake container."""
    docker = FakeDocker()

    def start(self, group: Group, resource: dict) -> None:
        docker.items.append(FakeContainer(group.key, running=True))
        group.provisioning_state = "Succeeded"

    monkeypatch.setattr(Groups, "_start", start)
    return Groups(docker, _config(standard_cores_quota=4)), docker


def _resource(name: str, cpu: float = 1, **properties) -> dict:
    return {"name": name, **_group((cpu, 1), **properties)}


def _wait_started(group: Group) -> None:
    deadline = time.monotonic() + 5
    while group.provisioning_state == "Creating" and time.monotonic() < deadline:
        time.sleep(0.01)


def test_groups_refuse_what_aci_refuses_with_its_status(groups):
    store, _ = groups
    with pytest.raises(GroupError) as refused:
        store.create("rg", _resource("Bad_Name"))
    assert (refused.value.code, refused.value.status) == ("ContainerGroupNameInvalid", 400)
    with pytest.raises(GroupError) as refused:
        store.create("rg", _resource("big", cpu=5))
    assert (refused.value.code, refused.value.status) == ("ServiceUnavailable", 409)
    assert store.get("rg", "big") is None


def test_an_allowed_update_restarts_every_container_a_refused_one_changes_nothing(groups):
    store, docker = groups
    first = store.create("rg", _resource("g", restartPolicy="Always"))
    _wait_started(first)
    [before] = docker.list()
    with pytest.raises(GroupError) as refused:
        store.create("rg", _resource("g", restartPolicy="Never"))
    assert refused.value.code == "InvalidContainerGroupUpdate"
    assert store.get("rg", "g") is first and not before.removed
    changed = _resource("g", restartPolicy="Always")
    changed["properties"]["containers"][0]["properties"]["image"] = "y"
    second = store.create("rg", changed)
    _wait_started(second)
    assert before.removed  # the old containers went; the new definition's run
    assert store.get("rg", "g") is second and len(docker.list()) == 1


def test_the_core_quota_counts_groups_holding_cores_only(groups):
    store, docker = groups
    running = store.create("rg", _resource("running", cpu=2))
    stopped = store.create("rg", _resource("stopped", cpu=2))
    _wait_started(running)
    _wait_started(stopped)
    stopped.stopped = True
    assert store.cores_in_use() == 2
    with pytest.raises(GroupError) as refused:
        store.create("rg", _resource("third", cpu=2.5))
    assert refused.value.code == "ContainerGroupQuotaReached"
    assert "Limit: '4', Usage: '2' Requested: '2.5'" in str(refused.value)
    # A group whose containers all ended (restart policy Never, terminated) holds no cores.
    for container in docker.list():
        container.attrs["State"] = {"Running": False, "Status": "exited"}
    assert store.cores_in_use() == 0
    store.create("rg", _resource("third", cpu=2.5))


def test_delete_is_an_operation_that_takes_its_time(groups):
    store, docker = groups
    group = store.create("rg", _resource("g"))
    _wait_started(group)
    operation = store.begin_delete(group, 0.5)
    assert operation.status == "InProgress" and group.provisioning_state == "Deleting"
    assert store.begin_delete(group, 0.5) is operation  # a second DELETE: the same operation
    assert store.get("rg", "g") is group  # still there, answering GET
    assert store.cores_in_use() == 1  # and holding its cores until it is gone
    with pytest.raises(GroupError) as refused:
        store.create("rg", _resource("g"))
    assert (refused.value.code, refused.value.status) == ("Conflict", 409)
    deadline = time.monotonic() + 5
    while operation.status == "InProgress" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert operation.status == "Succeeded" and operation.ended
    assert store.get("rg", "g") is None and docker.list() == []
    body = store.operation(operation.id).body("/x/operations/" + operation.id)
    assert body["status"] == "Succeeded" and {"startTime", "endTime"} <= set(body)


def test_settings_change_at_run_time_through_the_stacks_door_only():
    config = _config()
    door = TestClient(https_app(LocalAci(config, None, None, None, "secret")))
    assert door.get("/_local/settings").status_code == 401
    headers = {"X-IDENTITY-HEADER": "secret"}
    assert door.get("/_local/settings", headers=headers).json() == {
        "container_group_delete_seconds": 1.0,
        "standard_cores_quota": 100,
        "role_assignment_delay_seconds": 0.0,
    }
    answer = door.post(
        "/_local/settings", headers=headers, json={"container_group_delete_seconds": 35}
    )
    assert answer.status_code == 200 and answer.json()["container_group_delete_seconds"] == 35
    assert config.container_group_delete_seconds == 35
    for bad in ({"location": "x"}, {"standard_cores_quota": -1}, {"standard_cores_quota": "a"}):
        assert door.post("/_local/settings", headers=headers, json=bad).status_code == 400
    assert config.standard_cores_quota == 100


class RecordingDocker:
    """Docker's client as Groups starts a container: what it was asked to create."""

    def __init__(self) -> None:
        self.created: list[dict] = []
        self.containers = self
        self.networks = self

    def list(self, **kwargs) -> list:
        return []

    def create(self, image: str, **kwargs):
        self.created.append(kwargs)
        return self

    def get(self, name: str):
        return self

    def connect(self, container) -> None:
        pass

    def start(self) -> None:
        pass


def test_a_group_container_cannot_craft_packets_from_another_address():
    docker = RecordingDocker()
    groups = Groups(docker, _config())
    container = {"name": "c0", "properties": {"image": "img", "resources": {"requests": {}}}}
    groups._run(Group("rg", "g", {"name": "g"}), container, {}, [])
    [created] = docker.created
    assert "NET_RAW" in created["cap_drop"]
