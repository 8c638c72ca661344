"""Rules Azure Container Instances applies to a container group PUT beyond its JSON schema, as
pure functions: each returns the (code, message) problems it finds in a group's name or body.

The error codes are this module's best names for Azure's; the ones not confirmed against a
recorded Azure answer are listed in the report of issue 18 item 4."""

import re
from decimal import Decimal, InvalidOperation

Problem = tuple[str, str]

# Microsoft Learn, Microsoft.ContainerInstance/containerGroups template reference (name:
# "1-63 characters, lowercase letters, numbers and hyphens; can't start or end with a hyphen;
# consecutive hyphens aren't allowed"); the same rule in ScriptContainerConfiguration.
# ContainerGroupName ("between 1 and 63 characters long, must contain only lowercase letters,
# numbers, and dashes and it cannot start or end with a dash and consecutive dashes are not
# allowed").
NAME = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")
NAME_MAX = 63

# Microsoft Learn, "Resource availability & quota limits for ACI", Standard container resources,
# Linux container groups: 4 CPU and 16 GB per group by default (the standard maxima).
MAX_CPU = Decimal(4)
MAX_MEMORY_GB = Decimal(16)
MEMORY_STEP = Decimal("0.1")


def name_problems(name: str) -> list[Problem]:
    if 1 <= len(name) <= NAME_MAX and NAME.match(name):
        return []
    return [
        (
            "ContainerGroupNameInvalid",
            f"The container group name '{name}' is invalid. It must be 1-63 characters of "
            "lowercase letters, numbers and hyphens, and cannot start or end with a hyphen or "
            "contain consecutive hyphens.",
        )
    ]


def _containers(body: dict) -> list[dict]:
    return [c for c in (body.get("properties") or {}).get("containers") or [] if c]


def _decimal(value) -> Decimal | None:
    try:
        return Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None


def memory_problems(name: str, body: dict) -> list[Problem]:
    # Azure's own answer (Azure/azure-cli#7355): "The memory requirement should be times of
    # 0.1 GB"; for requests and limits alike (virtual-kubelet/virtual-kubelet#639).
    problems = []
    for container in _containers(body):
        resources = (container.get("properties") or {}).get("resources") or {}
        for kind in ("requests", "limits"):
            memory = (resources.get(kind) or {}).get("memoryInGB")
            if memory is None:
                continue
            value = _decimal(memory)
            if value is None or value % MEMORY_STEP != 0:
                problems.append(
                    (
                        "InvalidMemoryRequirement",
                        f"The memory requirement '{memory}' in container "
                        f"'{container.get('name')}' of container group '{name}' is invalid. "
                        "The memory requirement should be times of 0.1 GB.",
                    )
                )
    return problems


def limit_problems(name: str, body: dict) -> list[Problem]:
    cpu = memory = Decimal(0)
    for container in _containers(body):
        requests = (
            ((container.get("properties") or {}).get("resources") or {}).get("requests")
        ) or {}
        cpu += _decimal(requests.get("cpu", 0)) or 0
        memory += _decimal(requests.get("memoryInGB", 0)) or 0
    if cpu <= MAX_CPU and memory <= MAX_MEMORY_GB:
        return []
    return [
        (
            "ResourceRequestsExceedLimits",
            f"The container group '{name}' requests '{cpu}' CPU and '{memory}' GB memory; a "
            f"standard Linux container group allows at most '{MAX_CPU}' CPU and "
            f"'{MAX_MEMORY_GB}' GB memory.",
        )
    ]


def network_problems(name: str, body: dict) -> list[Problem]:
    # Microsoft Learn, "Virtual network scenarios and resources" (Azure Container Instances),
    # Unsupported networking scenarios: "Public IP or DNS label - Container groups deployed to a
    # virtual network don't currently support exposing containers directly to the internet with
    # a public IP address or a fully qualified domain name".
    properties = body.get("properties") or {}
    ip_type = ((properties.get("ipAddress") or {}).get("type") or "").lower()
    if ip_type == "public" and properties.get("subnetIds"):
        return [
            (
                "PublicIPAddressNotSupportedWithSubnet",
                f"The IP address type of container group '{name}' is Public, but the group has "
                "subnetIds: a container group in a virtual network cannot have a public IP "
                "address.",
            )
        ]
    return []


def group_problems(name: str, body: dict) -> list[Problem]:
    """Every rule, in the order Azure reports them: the name, then the body."""
    return (
        name_problems(name)
        + memory_problems(name, body)
        + limit_problems(name, body)
        + network_problems(name, body)
    )
