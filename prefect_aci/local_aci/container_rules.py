"""Rules Azure Container Instances applies to a container group PUT beyond its JSON schema, as
pure functions: each returns the problems (status, code, message) it finds in a group's name, its
body, the change from the group it replaces, or the region's core quota.

Where Azure's own answer was found (a recorded error in an issue thread or Microsoft's
troubleshooting pages), the code, status and message are Azure's and the source is named beside
the rule. Where it was not, the code is this module's best name and says so (``LOCAL_CODES``)."""

import re
from decimal import Decimal, InvalidOperation
from typing import NamedTuple


class Problem(NamedTuple):
    code: str
    message: str
    status: int = 400


# Codes no recorded Azure answer confirmed: local names for documented rules.
LOCAL_CODES = frozenset(
    {
        "ContainerGroupNameInvalid",
        "InvalidMemoryRequirement",
        "PublicIPAddressNotSupportedWithSubnet",
        "ContainerGroupLimitExceeded",
    }
)

# Microsoft Learn, Microsoft.ContainerInstance/containerGroups template reference (name:
# "1-63 characters, lowercase letters, numbers and hyphens; can't start or end with a hyphen;
# consecutive hyphens aren't allowed"); the same rule in ScriptContainerConfiguration.
# ContainerGroupName ("between 1 and 63 characters long, must contain only lowercase letters,
# numbers, and dashes and it cannot start or end with a dash and consecutive dashes are not
# allowed").
NAME = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")
NAME_MAX = 63

# Microsoft Learn, "Resource availability & quota limits for ACI"
# (container-instances-resource-and-quota-limits):
# - Standard Container Resources, Linux Container Groups: Max CPU 4, Max Memory 16 GB, the same
#   in a virtual network (the standard maxima of a group, the sum of its containers' requests);
# - Unchangeable (Hard) Limits: 60 containers and 20 volumes per container group, 5 ports per IP;
# - Changeable Limits: "Standard sku cores (CPUs) per region per subscription": 100 (the default
#   regional core quota; LocalAzure.standard_cores_quota).
MAX_CPU = Decimal(4)
MAX_MEMORY_GB = Decimal(16)
MAX_CONTAINERS = 60
MAX_VOLUMES = 20
MAX_PORTS_PER_IP = 5
DEFAULT_CORE_QUOTA = 100
MEMORY_STEP = Decimal("0.1")


def _text(value: Decimal) -> str:
    """A number as Azure prints it in its messages: '4', '1.5'."""
    return format(value.normalize(), "f")


def _decimal(value) -> Decimal | None:
    try:
        return Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None


def _properties(body: dict) -> dict:
    return body.get("properties") or {}


def _containers(body: dict) -> list[dict]:
    return [c for c in _properties(body).get("containers") or [] if c]


def _resources(container: dict, kind: str) -> dict:
    return ((container.get("properties") or {}).get("resources") or {}).get(kind) or {}


def requested(body: dict) -> tuple[Decimal, Decimal]:
    """(CPU, memory in GB) the group requests: the sum of its containers' requests."""
    cpu = memory = Decimal(0)
    for container in _containers(body):
        requests = _resources(container, "requests")
        cpu += _decimal(requests.get("cpu", 0)) or 0
        memory += _decimal(requests.get("memoryInGB", 0)) or 0
    return cpu, memory


def name_problems(name: str) -> list[Problem]:
    if 1 <= len(name) <= NAME_MAX and NAME.match(name):
        return []
    return [
        Problem(
            "ContainerGroupNameInvalid",
            f"The container group name '{name}' is invalid. It must be 1-63 characters of "
            "lowercase letters, numbers and hyphens, and cannot start or end with a hyphen or "
            "contain consecutive hyphens.",
        )
    ]


def memory_problems(name: str, body: dict) -> list[Problem]:
    # Azure's own message (recorded in Azure/azure-cli#7355): "The memory requirement is
    # '4000000000' in container 'matt-of-big' of container group 'matt-of-big'. The memory
    # requirement should be times of 0.1 GB."; for requests and limits alike
    # (virtual-kubelet/virtual-kubelet#639). Its code was not recorded.
    problems = []
    for container in _containers(body):
        for kind in ("requests", "limits"):
            memory = _resources(container, kind).get("memoryInGB")
            if memory is None:
                continue
            value = _decimal(memory)
            if value is None or value % MEMORY_STEP != 0:
                problems.append(
                    Problem(
                        "InvalidMemoryRequirement",
                        f"The memory requirement is '{memory}' in container "
                        f"'{container.get('name')}' of container group '{name}'. The memory "
                        "requirement should be times of 0.1 GB.",
                    )
                )
    return problems


def container_limit_problems(name: str, body: dict) -> list[Problem]:
    """Per container: a limit below its own request, or above the group's total request.

    Azure's answers, recorded in virtual-kubelet/virtual-kubelet#143 and
    docker-archive/compose-cli#357 (HTTP 400): ResourceLimitsLessThanRequests ("The resource
    requirement '...' in container 'c' of contain group 'g' is invalid. The 'MemoryInGB' limit
    value must be greater than or equal to the request value.") and
    ContainerLimitGreaterThanContainerGroupTotalRequest ("The 'MemoryInGB' limit '3' in container
    'c' is greater than the total request '2' of container group 'g'.")."""
    problems = []
    total = dict(zip(("Cpu", "MemoryInGB"), requested(body), strict=True))
    for container in _containers(body):
        requests, limits = _resources(container, "requests"), _resources(container, "limits")
        for field, key in (("Cpu", "cpu"), ("MemoryInGB", "memoryInGB")):
            limit = _decimal(limits.get(key)) if key in limits else None
            if limit is None:
                continue
            request = _decimal(requests.get(key, 0)) or Decimal(0)
            if limit < request:
                problems.append(
                    Problem(
                        "ResourceLimitsLessThanRequests",
                        f"The resource requirement in container '{container.get('name')}' of "
                        f"contain group '{name}' is invalid. The '{field}' limit value must be "
                        "greater than or equal to the request value.",
                    )
                )
            elif limit > total[field]:
                problems.append(
                    Problem(
                        "ContainerLimitGreaterThanContainerGroupTotalRequest",
                        f"The '{field}' limit '{_text(limit)}' in container "
                        f"'{container.get('name')}' is greater than the total request "
                        f"'{_text(total[field])}' of container group '{name}'.",
                    )
                )
    return problems


def limit_problems(name: str, body: dict, location: str = "local") -> list[Problem]:
    """The group's total request above the standard Linux maxima.

    Azure's answer, recorded in Azure/azure-cli#7355, MicrosoftDocs/azure-docs#24776 and
    virtual-kubelet/virtual-kubelet#592 (HTTP 409, code ServiceUnavailable): "The requested
    resource with '4' CPU and '40' GB memory is not available in the location 'australiaeast' at
    this moment. Please retry with a different resource request or in another location."."""
    cpu, memory = requested(body)
    if cpu <= MAX_CPU and memory <= MAX_MEMORY_GB:
        return []
    return [
        Problem(
            "ServiceUnavailable",
            f"The requested resource with '{_text(cpu)}' CPU and '{_text(memory)}' GB memory is "
            f"not available in the location '{location}' at this moment. Please retry with a "
            "different resource request or in another location.",
            409,
        )
    ]


def count_problems(name: str, body: dict) -> list[Problem]:
    """The hard limits: containers and volumes per group, ports per IP address."""
    properties = _properties(body)
    counted = (
        ("containers", len(_containers(body)), MAX_CONTAINERS),
        ("volumes", len(properties.get("volumes") or []), MAX_VOLUMES),
        (
            "ports on its IP address",
            len((properties.get("ipAddress") or {}).get("ports") or []),
            MAX_PORTS_PER_IP,
        ),
    )
    return [
        Problem(
            "ContainerGroupLimitExceeded",
            f"The container group '{name}' has {count} {what}; Azure Container Instances allows "
            f"at most {most}.",
        )
        for what, count, most in counted
        if count > most
    ]


def network_problems(name: str, body: dict) -> list[Problem]:
    # Microsoft Learn, "Virtual network scenarios and resources" (Azure Container Instances),
    # Unsupported networking scenarios: "Public IP or DNS label - Container groups deployed to a
    # virtual network don't currently support exposing containers directly to the internet with
    # a public IP address or a fully qualified domain name".
    properties = _properties(body)
    ip_type = ((properties.get("ipAddress") or {}).get("type") or "").lower()
    if ip_type == "public" and properties.get("subnetIds"):
        return [
            Problem(
                "PublicIPAddressNotSupportedWithSubnet",
                f"The IP address type of container group '{name}' is Public, but the group has "
                "subnetIds: a container group in a virtual network cannot have a public IP "
                "address.",
            )
        ]
    return []


def _fixed(body: dict) -> dict:
    """What ACI cannot change in place, with ACI's defaults filled in.

    Microsoft Learn, "Update containers in Azure Container Instances", Properties that require
    container delete: OS type; CPU, memory or GPU resources; restart policy; network profile."""
    properties = _properties(body)

    def numbers(kind: dict) -> dict:
        found = {k: _decimal(v) for k, v in kind.items() if k in ("cpu", "memoryInGB")}
        if kind.get("gpu"):
            found["gpu"] = kind["gpu"]
        return found

    return {
        "osType": (properties.get("osType") or "Linux").lower(),
        "restartPolicy": (properties.get("restartPolicy") or "Always").lower(),
        "subnetIds": sorted(
            (s.get("id") or "").lower() for s in properties.get("subnetIds") or [] if s
        ),
        "ipAddressType": ((properties.get("ipAddress") or {}).get("type") or "").lower(),
        "resources": {
            c.get("name"): {kind: numbers(_resources(c, kind)) for kind in ("requests", "limits")}
            for c in _containers(body)
        },
    }


def update_problems(name: str, existing: dict, body: dict) -> list[Problem]:
    """A PUT over an existing group that changes what ACI cannot change in place.

    Azure's answer, recorded in MicrosoftDocs/azure-docs#38067 and #37604 (code
    InvalidContainerGroupUpdate, as a deployment shows it)."""
    if _fixed(existing) == _fixed(body):
        return []
    return [
        Problem(
            "InvalidContainerGroupUpdate",
            f"The updates on container group '{name}' are invalid. If you are going to update the "
            "os type, restart policy, network profile, CPU, memory or GPU resources for a "
            "container group, you must delete it first and then create a new one.",
        )
    ]


def quota_problems(
    body: dict, cores_in_use: Decimal, quota: float, location: str = "local"
) -> list[Problem]:
    """The region's standard core quota, counted over the groups that hold cores.

    Azure's answer (Microsoft's troubleshooting article "ContainerGroupQuotaReached error",
    with 'StandardSpotCores' for Spot groups; 'StandardCores' recorded in
    radius-project/radius's ACI test): code ContainerGroupQuotaReached, "Resource type
    'Microsoft.ContainerInstance/containerGroups' container group quota 'StandardCores' exceeded
    in region 'westus2'. Limit: '10', Usage: '10' Requested: '1'." The status code was not
    recorded: 409 here, as for the capacity error."""
    cpu, _ = requested(body)
    limit = Decimal(str(quota))
    if cores_in_use + cpu <= limit:
        return []
    return [
        Problem(
            "ContainerGroupQuotaReached",
            "Resource type 'Microsoft.ContainerInstance/containerGroups' container group quota "
            f"'StandardCores' exceeded in region '{location}'. Limit: '{_text(limit)}', Usage: "
            f"'{_text(cores_in_use)}' Requested: '{_text(cpu)}'.",
            409,
        )
    ]


def group_problems(name: str, body: dict, location: str = "local") -> list[Problem]:
    """Every rule on a group by itself, in the order Azure reports them: the name, then the
    body (its format, its containers, the group's size, the network)."""
    return (
        name_problems(name)
        + memory_problems(name, body)
        + count_problems(name, body)
        + container_limit_problems(name, body)
        + limit_problems(name, body, location)
        + network_problems(name, body)
    )
