"""Project checks for Microsoft.ContainerInstance/containerGroups: in a subnet, registry
credentials by identity only, secrets only as secure values; the last two also for the standby
pool's containerGroupProfiles (a profile has no subnet: its pool names it)."""

from __future__ import annotations

import re
from typing import Any

from checkov.arm.base_resource_check import BaseResourceCheck
from checkov.common.models.enums import CheckCategories, CheckResult

SUPPORTED = ("Microsoft.ContainerInstance/containerGroups",)
WITH_PROFILES = (*SUPPORTED, "Microsoft.ContainerInstance/containerGroupProfiles")
# prefect_aci.core.names.SECRET_ENV_NAME (checks import only checkov; a test keeps them equal).
SECRET_NAME = re.compile(
    r"(KEY|SECRET|TOKEN|PASSWORD|PASSWD|AUTH_STRING|CONNECTION_STRING)$", re.IGNORECASE
)
SECRET_PARAMETER = re.compile(
    r"parameters\('[^']*(key|secret|token|password)[^']*'\)", re.IGNORECASE
)
# A plain variable an ARM expression builds: createObject('name', '<name>', 'value', <value>).
PLAIN_VARIABLE = re.compile(r"createObject\(\s*'name',\s*'([^']*)',\s*'value',\s*([^)]*\)?)")


def _properties(conf: dict[str, Any]) -> dict[str, Any]:
    properties = conf.get("properties")
    return properties if isinstance(properties, dict) else {}


class ContainerGroupInSubnet(BaseResourceCheck):
    """Container groups must run in the delegated subnet: private IP, NAT egress, no public IP."""

    def __init__(self) -> None:
        super().__init__(
            name="Ensure ACI container groups are deployed into a VNet subnet",
            id="CKV_PACI_1",
            categories=[CheckCategories.NETWORKING],
            supported_resources=SUPPORTED,
        )

    def scan_resource_conf(self, conf: dict[str, Any]) -> CheckResult:
        properties = _properties(conf)
        subnets = properties.get("subnetIds")
        if not isinstance(subnets, list) or not subnets:
            return CheckResult.FAILED
        address = properties.get("ipAddress")
        if isinstance(address, dict) and address.get("type") != "Private":
            return CheckResult.FAILED
        return CheckResult.PASSED


class ContainerGroupRegistryIdentity(BaseResourceCheck):
    """Registry credentials must name a managed identity, never a username and password."""

    def __init__(self) -> None:
        super().__init__(
            name="Ensure ACI registry credentials use a managed identity",
            id="CKV_PACI_2",
            categories=[CheckCategories.IAM],
            supported_resources=WITH_PROFILES,
        )

    def scan_resource_conf(self, conf: dict[str, Any]) -> CheckResult:
        credentials = _properties(conf).get("imageRegistryCredentials")
        if credentials is None:
            return CheckResult.PASSED
        if isinstance(credentials, str):
            # An ARM expression (createObject(...)): judge the keys it builds.
            if "'password'" in credentials or "'username'" in credentials:
                return CheckResult.FAILED
            return CheckResult.PASSED if "'identity'" in credentials else CheckResult.FAILED
        for entry in credentials if isinstance(credentials, list) else [credentials]:
            if not isinstance(entry, dict) or "password" in entry or "username" in entry:
                return CheckResult.FAILED
            if not entry.get("identity"):
                return CheckResult.FAILED
        return CheckResult.PASSED


class ContainerGroupSecureValues(BaseResourceCheck):
    """Secrets go in secureValue (hidden from the container group's properties), never value."""

    def __init__(self) -> None:
        super().__init__(
            name="Ensure ACI secrets are passed only as secure values",
            id="CKV_PACI_3",
            categories=[CheckCategories.SECRETS],
            supported_resources=WITH_PROFILES,
        )

    def scan_resource_conf(self, conf: dict[str, Any]) -> CheckResult:
        containers = _properties(conf).get("containers") or []
        for container in containers if isinstance(containers, list) else []:
            env = (container.get("properties") or {}).get("environmentVariables") or []
            if isinstance(env, str):
                # An ARM expression (concat(...)): judge the plain variables it builds.
                for name, value in PLAIN_VARIABLE.findall(env):
                    # The value itself a secret parameter (not one inside a reference(): a
                    # vault's URI is read with parameters('keyVaultName')).
                    if SECRET_NAME.search(name) or SECRET_PARAMETER.match(value.strip()):
                        return CheckResult.FAILED
                continue
            for variable in env if isinstance(env, list) else []:
                if not isinstance(variable, dict) or "value" not in variable:
                    continue
                name, value = str(variable.get("name", "")), str(variable["value"])
                if SECRET_NAME.search(name) or SECRET_PARAMETER.search(value):
                    return CheckResult.FAILED
        return CheckResult.PASSED


in_subnet = ContainerGroupInSubnet()
registry_identity = ContainerGroupRegistryIdentity()
secure_values = ContainerGroupSecureValues()
