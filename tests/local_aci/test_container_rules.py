"""Local ACI's container group rules beyond the schema (issue 18 item 4): one test per rule with
a valid and an invalid case, and the groups this project sends pass them all."""

import copy
import json
import uuid
from pathlib import Path

from prefect_azure.workers.container_instance import AzureContainerWorker

from blocks.work_pool import CPU, MEMORY_GB
from prefect_aci.local_aci import container_rules as rules

ROOT = Path(__file__).resolve().parents[2]


def _group(*requests: tuple, limits: tuple | None = None, **properties) -> dict:
    containers = []
    for i, (cpu, memory) in enumerate(requests):
        resources = {"requests": {"cpu": cpu, "memoryInGB": memory}}
        if limits:
            resources["limits"] = {"cpu": limits[0], "memoryInGB": limits[1]}
        containers.append({"name": f"c{i}", "properties": {"image": "x", "resources": resources}})
    return {"properties": {"osType": "Linux", "containers": containers, **properties}}


def _codes(problems) -> list[str]:
    return [code for code, _ in problems]


def test_group_name_rule():
    for good in ("a", "prefect-worker", "a" * 63, "demo-" + str(uuid.uuid4())):
        assert rules.name_problems(good) == [], good
    for bad in ("", "a" * 64, "Prefect", "-a", "a-", "a--b", "a_b", "a.b"):
        assert _codes(rules.name_problems(bad)) == ["ContainerGroupNameInvalid"], bad


def test_memory_in_multiples_of_a_tenth_for_requests_and_limits():
    assert rules.memory_problems("g", _group((1, 1.5), limits=(1, 2.3))) == []
    assert _codes(rules.memory_problems("g", _group((1, 1.55)))) == ["InvalidMemoryRequirement"]
    assert _codes(rules.memory_problems("g", _group((1, 2), limits=(1, 0.25)))) == [
        "InvalidMemoryRequirement"
    ]


def test_group_requests_within_the_standard_linux_maxima():
    assert rules.limit_problems("g", _group((2, 8), (2, 8))) == []
    [(code, message)] = rules.limit_problems("g", _group((2, 8), (2.5, 1)))
    assert code == "ResourceRequestsExceedLimits" and "'4.5' CPU" in message
    assert _codes(rules.limit_problems("g", _group((1, 16.1)))) == ["ResourceRequestsExceedLimits"]


def test_public_ip_with_subnet_is_refused():
    subnet = [{"id": "/subscriptions/s/resourceGroups/rg/providers/x/subnets/aci"}]
    private = _group((1, 2), ipAddress={"type": "Private", "ports": []}, subnetIds=subnet)
    public_alone = _group((1, 2), ipAddress={"type": "Public", "ports": []})
    assert rules.network_problems("g", private) == []
    assert rules.network_problems("g", public_alone) == []
    public = _group((1, 2), ipAddress={"type": "Public", "ports": []}, subnetIds=subnet)
    assert _codes(rules.network_problems("g", public)) == ["PublicIPAddressNotSupportedWithSubnet"]


def test_the_templates_worker_group_passes_with_its_default_parameters():
    template = json.loads((ROOT / "arm" / "azuredeploy.json").read_text())
    [group] = [
        r
        for r in template["resources"]
        if r["type"] == "Microsoft.ContainerInstance/containerGroups"
    ]
    defaults = {k: p.get("defaultValue") for k, p in template["parameters"].items()}
    # The three expressions the rules look at, resolved by hand from the parameter defaults.
    assert (
        template["variables"]["workerGroupName"] == "[format('{0}-worker', parameters('prefix'))]"
    )
    body = copy.deepcopy(group)
    requests = body["properties"]["containers"][0]["properties"]["resources"]["requests"]
    assert requests == {
        "cpu": "[json(parameters('workerCpu'))]",
        "memoryInGB": "[json(parameters('workerMemoryInGB'))]",
    }
    requests["cpu"] = json.loads(defaults["workerCpu"])
    requests["memoryInGB"] = json.loads(defaults["workerMemoryInGB"])
    assert rules.group_problems(f"{defaults['prefix']}-worker", body) == []


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
