"""Local ACI inside the test process, as the callers of azure-mgmt-* meet it: its HTTPS app
(prefect_aci.local_aci.app) behind a loopback socket (plain HTTP reached through
RedirectTransport, or HTTPS with a LocalTls for a command in a subprocess that reaches
management.azure.com through AzureHostsProxy), with its own token issuer, Azure RBAC over a real
role assignment of the deployer, its App Service-style identity endpoint for
ManagedIdentityCredential, local Resource Manager, Key Vault at `<vault>.vault.azure.net` for
what a test records as deployed (identities, vaults, secrets, role assignments), and container
groups that run nothing (FakeGroups). Every request is recorded, as the stand-ins record theirs."""

import datetime
import uuid
from dataclasses import dataclass
from pathlib import Path

from fastapi.testclient import TestClient

from prefect_aci.local_aci.app import MANAGEMENT, LocalAci, https_app
from prefect_aci.local_aci.authorization import OWNER, assignment, definition_id
from prefect_aci.local_aci.config import Identity, LocalAzure, Wiring
from prefect_aci.local_aci.resource_manager import Deployment, ResourceManager
from prefect_aci.local_aci.resources import (
    IDENTITIES,
    ROLE_ASSIGNMENTS,
    VAULT_SECRETS,
    VAULTS,
    Context,
    Recorded,
)
from prefect_aci.local_aci.tls import LocalTls
from prefect_aci.local_aci.tokens import TokenIssuer, make_signing_key
from tests.local_aci.arm_helpers import (
    DEPLOYER,
    GROUP,
    GROUP_ID,
    SCHEMAS,
    SUBSCRIPTION,
    TENANT,
    FakeGroups,
)
from tests.redirect import RedirectTransport
from tests.stand_ins import Answer, Request, StandIn

DEPLOYER_IDENTITY = Identity(
    name="prefect-aci-deployer",
    resource_id=(
        f"{GROUP_ID}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/"
        "prefect-aci-deployer"
    ),
    client_id="3f2a1b0c-9d8e-4f7a-8b6c-5d4e3f2a1b0c",
    principal_id=DEPLOYER,
)
DEPLOYER_SECRET = "deployer-secret-of-the-tests"
# Headers of the socket's request that are not the request's own (TestClient sets its own).
NOT_PASSED = frozenset(
    {"host", "content-length", "connection", "accept-encoding", "transfer-encoding"}
)


def local_azure(role: str | None = OWNER, **fields) -> LocalAzure:
    """The local Azure of these tests: one resource group, the deployer holding the built-in
    ``role`` on it (no assignment with None); what a template deploys is in the store."""
    assignments = (
        [assignment(DEPLOYER, definition_id(SUBSCRIPTION, role), GROUP_ID)] if role else []
    )
    values = {
        "tenant_id": TENANT,
        "subscription_id": SUBSCRIPTION,
        "resource_group": GROUP,
        "location": "westeurope",
        "identities": [DEPLOYER_IDENTITY],
        "role_assignments": assignments,
        "admin_principal_id": DEPLOYER,
        "wiring": Wiring(
            stack_id="tests", network="n", imds_network="i", extra_hosts={}, ca_bundle_host_path="/"
        ),
    }
    return LocalAzure(**{**values, **fields})


class LocalAciServer(StandIn):
    """The app's HTTPS routes behind a loopback socket: at the Azure host name the client asked
    for through AzureHostsProxy (the app dispatches vaults and registries by host), else as
    management.azure.com."""

    def __init__(self, aci: LocalAci, tls: LocalTls | None = None) -> None:
        super().__init__(tls)
        self.client = TestClient(https_app(aci), base_url=MANAGEMENT)

    def answer(self, request: Request) -> Answer:
        headers = {k: v for k, v in request.headers.items() if k.lower() not in NOT_PASSED}
        host = (request.headers.get("Host") or "").rsplit(":", 1)[0]
        at_name = host and host not in ("127.0.0.1", "localhost")
        response = self.client.request(
            request.method,
            f"https://{host}{request.path}" if at_name else request.path,
            params=request.query,
            content=request.body,
            headers=headers,
        )
        passed = {
            k: v
            for k, v in response.headers.items()
            if k.lower() not in ("content-length", "content-encoding", "transfer-encoding")
        }
        return Answer(response.status_code, response.content, passed)


@dataclass
class Local:
    """One local ACI: its settings, container groups, Resource Manager and server."""

    config: LocalAzure
    groups: FakeGroups
    arm: ResourceManager
    server: LocalAciServer
    issuer: TokenIssuer

    def transport(self) -> RedirectTransport:
        return RedirectTransport(MANAGEMENT, self.server.url)

    def identity_env(self) -> dict[str, str]:
        """Environment that makes azure-identity's ManagedIdentityCredential the deployer."""
        return {
            "IDENTITY_ENDPOINT": f"{self.server.url}/_local/msi/token",
            "IDENTITY_HEADER": DEPLOYER_SECRET,
        }

    def token_requests(self) -> list[Request]:
        return [r for r in self.server.received if r.path == "/_local/msi/token"]

    def at_host(self, host: str) -> list[Request]:
        """The requests that came for ``host`` (a vault's, through AzureHostsProxy)."""
        return [
            r
            for r in self.server.received
            if (r.headers.get("Host") or "").rsplit(":", 1)[0].lower() == host.lower()
        ]

    def deploy(self, resource: dict) -> Recorded:
        """A resource in a template's shape (type, name, properties, scope), recorded as if the
        deployer had deployed it: its provider's GET shape in Resource Manager's store."""
        context = Context(
            self.config.subscription_id,
            self.config.resource_group,
            self.config.tenant_id,
            "tests",
            caller=self.config.admin_principal_id,
        )
        return self.arm.store.record(resource, context)

    def add_identity(self, name: str) -> Identity:
        """A user-assigned identity as if deployed (its client and principal ids made by its
        provider)."""
        found = self.deploy({"type": IDENTITIES, "name": name, "location": self.config.location})
        return Identity(
            name=name,
            resource_id=found.id,
            client_id=found.properties["clientId"],
            principal_id=found.properties["principalId"],
        )

    def add_vault(self, name: str, secrets: dict[str, str]) -> Recorded:
        """A vault with RBAC authorisation and its secrets, as if deployed: it answers at
        https://<name>.vault.azure.net."""
        vault = self.deploy(
            {
                "type": VAULTS,
                "name": name,
                "location": self.config.location,
                "properties": {
                    "tenantId": self.config.tenant_id,
                    "sku": {"family": "A", "name": "standard"},
                    "enableRbacAuthorization": True,
                },
            }
        )
        for secret, value in secrets.items():
            self.deploy(
                {"type": VAULT_SECRETS, "name": f"{name}/{secret}", "properties": {"value": value}}
            )
        return vault

    def add_role_assignment(self, principal_id: str, role: str, scope: str) -> Recorded:
        """``principal_id`` holds the built-in ``role`` (its GUID) on ``scope``, as a template's
        role assignment with principalType ServicePrincipal."""
        return self.deploy(
            {
                "type": ROLE_ASSIGNMENTS,
                "name": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{scope}/{principal_id}/{role}")),
                "scope": scope,
                "properties": {
                    "roleDefinitionId": definition_id(self.config.subscription_id, role),
                    "principalId": principal_id,
                    "principalType": "ServicePrincipal",
                },
            }
        )

    def of(self, method: str, contains: str) -> list[Request]:
        """The Resource Manager requests of ``method`` whose path contains ``contains``
        (without regard to case, as ARM reads paths)."""
        return [
            r
            for r in self.server.received
            if r.method == method
            and contains.lower() in r.path.lower()
            and not r.path.startswith("/_local/")
        ]

    def inject_fault(self, **fault) -> None:
        """A fault as a test posts it to the stack's door (/_local/faults; LocalAci.add_fault
        reads ``fault``)."""
        answer = self.server.client.post(
            "/_local/faults", json=fault, headers={"X-IDENTITY-HEADER": DEPLOYER_SECRET}
        )
        assert answer.status_code == 201, answer.text

    def add_group(self, name: str, containers: dict[str, dict[str, str]], **requests) -> None:
        """A container group as if deployed: each container with its plain environment and
        ``requests`` (cpu, memoryInGB; 1 and 1 unless given)."""
        self.groups.create(
            self.config.resource_group,
            {
                "type": "Microsoft.ContainerInstance/containerGroups",
                "name": name,
                "location": self.config.location,
                "properties": {
                    "osType": "Linux",
                    "restartPolicy": "Never",
                    "containers": [
                        {
                            "name": container,
                            "properties": {
                                "image": "prefectacr1.azurecr.io/prefect-aci@sha256:" + "2" * 64,
                                "environmentVariables": [
                                    {"name": k, "value": v} for k, v in env.items()
                                ],
                                "resources": {
                                    "requests": {"cpu": 1.0, "memoryInGB": 1.0, **requests}
                                },
                            },
                        }
                        for container, env in containers.items()
                    ],
                },
            },
        )

    def add_deployment(
        self, name: str, timestamp: datetime.datetime, state: str = "Succeeded"
    ) -> None:
        """An entry of the resource group's deployment history, as if deployed at
        ``timestamp``."""
        deployment = Deployment(
            self.config.resource_group,
            name,
            "Incremental",
            {},
            state=state,
            timestamp=timestamp.astimezone(datetime.UTC).isoformat(),
        )
        if state != "Running":
            deployment.done.set()
        self.arm.deployments[deployment.key] = deployment

    def deployment_names(self) -> set[str]:
        return {d.name for d in self.arm.all_in(self.config.resource_group)}

    def group_names(self) -> set[str]:
        return {g.name for g in self.groups.all_in(self.config.resource_group)}

    def close(self) -> None:
        self.server.close()


def start_local(
    folder: Path,
    config: LocalAzure | None = None,
    tls: LocalTls | None = None,
    groups: FakeGroups | None = None,
) -> Local:
    """A local ACI with its signing key in ``folder``."""
    config = config or local_azure()
    make_signing_key(folder / "signing-key.pem")
    issuer = TokenIssuer(folder / "signing-key.pem", config.tenant_id)
    groups = groups if groups is not None else FakeGroups([])
    arm = ResourceManager(config.subscription_id, groups, SCHEMAS, tenant_id=config.tenant_id)
    aci = LocalAci(config, groups, arm, issuer, DEPLOYER_SECRET)
    return Local(config, groups, arm, LocalAciServer(aci, tls), issuer)
