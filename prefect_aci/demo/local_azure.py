"""The local Azure of a stack: a subscription, a resource group, the worker, job and deployer
identities with the roles the ARM template gives them (its role definitions and assignments,
evaluated from arm/azuredeploy.json, and the deployer's Owner on the group), a vault with the demo
secret, the TLS certificate the stand-ins serve, and the record the Prefect side is registered
from (the same shape as build/azure.json, as `prefect-aci azure deploy` writes it)."""

import json
import secrets
import ssl
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path

from azure.core.credentials import AccessToken
from azure.mgmt.containerinstance import ContainerInstanceManagementClient

from arm.deploy import TEMPLATE
from prefect_aci.core.names import DEFAULT_WORK_POOL, DEMO_SECRET, FLOW_CODE_CONTAINER
from prefect_aci.core.records import AzureRecord, read_record, write_record
from prefect_aci.local_aci import server
from prefect_aci.local_aci.app import MANAGEMENT_HOST
from prefect_aci.local_aci.authorization import (
    OWNER,
    ROLE_ASSIGNMENTS,
    ROLE_DEFINITIONS,
    assignment,
    definition_id,
)
from prefect_aci.local_aci.config import (
    Identity,
    LocalAzure,
    Wiring,
    read_config,
    write_config,
)
from prefect_aci.local_aci.expressions import Scope, evaluate
from prefect_aci.local_aci.imds_router import NETWORK as IMDS_NETWORK
from prefect_aci.local_aci.tls import LocalTls, make_tls
from prefect_aci.local_aci.tokens import make_signing_key

RESOURCE_GROUP = "prefect-aci-local"
VAULT_NAME = "prefectacilocalkv"
AZURITE_ACCOUNT = "devstoreaccount1"
# The stand-in's TLS certificate lives as long as a demo stack may run.
CERTIFICATE_DAYS = 30


class DeployerCredential:
    """A TokenCredential for the deployer, from the stack's App Service-style identity endpoint:
    the calls a user makes from their machine (not from a container on the stack's network)."""

    def __init__(self, local_aci: str, secret: str, context: ssl.SSLContext) -> None:
        self.endpoint = f"{local_aci}/_local/msi/token"
        self.secret, self.context = secret, context

    def get_token(self, *scopes: str, **_) -> AccessToken:
        resource = scopes[0].removesuffix("/.default")
        query = urllib.parse.urlencode({"resource": resource, "api-version": "2019-08-01"})
        request = urllib.request.Request(  # noqa: S310 (https, loopback)
            f"{self.endpoint}?{query}", headers={"X-IDENTITY-HEADER": self.secret}
        )
        with urllib.request.urlopen(request, context=self.context, timeout=10) as answer:  # noqa: S310
            body = json.loads(answer.read())
        return AccessToken(body["access_token"], int(body["expires_on"]))


@dataclass(frozen=True)
class LocalSide:
    config: LocalAzure
    record: AzureRecord
    tls: LocalTls
    folder: Path  # mounted into the stand-in's container
    deployer_secret: str

    def credential(self, local_aci: str) -> DeployerCredential:
        return DeployerCredential(local_aci, self.deployer_secret, self.tls.client_context())

    def deployer_env(self, local_aci: str) -> dict[str, str]:
        """What a process sets to sign in to the local Azure as the deployer
        (DefaultAzureCredential, App Service managed identity protocol) and to trust its
        certificate. The caller also unsets this machine's own AZURE_* settings."""
        return {
            "IDENTITY_ENDPOINT": f"{local_aci}/_local/msi/token",
            "IDENTITY_HEADER": self.deployer_secret,
            "AZURE_TOKEN_CREDENTIALS": "ManagedIdentityCredential",
            "REQUESTS_CA_BUNDLE": str(self.tls.bundle),
            "SSL_CERT_FILE": str(self.tls.bundle),
        }

    def aci(self, local_aci: str) -> ContainerInstanceManagementClient:
        """Container Instances as the deployer, through the stack's door on 127.0.0.1."""
        return ContainerInstanceManagementClient(
            self.credential(local_aci),
            self.config.subscription_id,
            base_url=local_aci,
            connection_verify=str(self.tls.bundle),
        )


def _identity(resource_group_id: str, name: str) -> Identity:
    return Identity(
        name=name,
        resource_id=(
            f"{resource_group_id}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/{name}"
        ),
        client_id=str(uuid.uuid4()),
        principal_id=str(uuid.uuid4()),
    )


def _evaluated(resource: dict, scope: Scope) -> dict | None:
    """A template resource with its expressions evaluated, or None when its condition is false."""
    if "condition" in resource and not evaluate(resource["condition"], scope):
        return None
    return evaluate(
        {k: v for k, v in resource.items() if k not in ("condition", "dependsOn")}, scope
    )


def template_roles(
    template: dict,
    subscription: str,
    resource_group: str,
    identities: list[Identity],
    given: dict,
    created_on: str | None = None,
) -> tuple[list[dict], list[dict]]:
    """The role definitions and role assignments ``template`` deploys, in Resource Manager's GET
    shapes: its custom roles (at the subscription, by the GUID the template names them with)
    and its assignments at the scope each names (the resource group when none), referring to
    the roles by the ids the template gives. ``given`` are parameter values; reference() of an
    identity answers from ``identities``."""
    group_id = f"/subscriptions/{subscription}/resourceGroups/{resource_group}"
    scope = Scope(
        subscription_id=subscription,
        resource_group=resource_group,
        location="local",
        deployment_name="local-azure",
        template=template,
        given=given,
        references={
            i.resource_id.lower(): {"principalId": i.principal_id, "clientId": i.client_id}
            for i in identities
        },
    )
    definitions, assignments = [], []
    for resource in template.get("resources", []):
        kind = resource.get("type", "").lower()
        if kind not in (ROLE_DEFINITIONS.lower(), ROLE_ASSIGNMENTS.lower()):
            continue
        found = _evaluated(resource, scope)
        if found is None:
            continue
        if kind == ROLE_DEFINITIONS.lower():
            definitions.append(
                {
                    "id": definition_id(subscription, found["name"]),
                    "name": found["name"],
                    "type": ROLE_DEFINITIONS,
                    "properties": found.get("properties") or {},
                }
            )
            continue
        properties = found.get("properties") or {}
        at = found.get("scope") or group_id
        made = assignment(properties["principalId"], properties["roleDefinitionId"], at, created_on)
        made["name"] = found["name"]
        made["id"] = f"{at}/providers/{ROLE_ASSIGNMENTS}/{found['name']}"
        made["properties"]["principalType"] = properties.get("principalType", "ServicePrincipal")
        assignments.append(made)
    return definitions, assignments


def make_local_side(
    folder: Path,
    stack_id: str,
    network: str,
    gateway: str,
    stand_in_address: str,
    blob_port: int,
    role_assignment_delay_seconds: float = 0.0,
) -> LocalSide:
    subscription = str(uuid.uuid4())
    group_id = f"/subscriptions/{subscription}/resourceGroups/{RESOURCE_GROUP}"
    worker = _identity(group_id, "prefect-worker-id")
    job = _identity(group_id, "prefect-job-id")
    deployer = _identity(group_id, "prefect-aci-deployer")
    vault_host = f"{VAULT_NAME}.vault.azure.net"
    tls = make_tls(
        folder / "tls",
        addresses=("127.0.0.1", gateway, stand_in_address),
        names=(MANAGEMENT_HOST, vault_host),
        days=CERTIFICATE_DAYS,
    )
    # The roles the template gives (its custom worker role, the job identity's Key Vault Secrets
    # User on the vault, AcrPull on the registry, the storage roles), as the template would
    # deploy them for these identities; the deployer holds Owner on the resource group.
    definitions, assignments = template_roles(
        json.loads(TEMPLATE.read_text()),
        subscription,
        RESOURCE_GROUP,
        [worker, job, deployer],
        {
            "keyVaultName": VAULT_NAME,
            "deployerPrincipalId": deployer.principal_id,
            "deployerPrincipalType": "ServicePrincipal",
        },
    )
    assignments.append(
        assignment(deployer.principal_id, definition_id(subscription, OWNER), group_id)
    )
    config = LocalAzure(
        tenant_id=str(uuid.uuid4()),
        subscription_id=subscription,
        resource_group=RESOURCE_GROUP,
        identities=[worker, job, deployer],
        role_definitions=definitions,
        role_assignments=assignments,
        role_assignment_delay_seconds=role_assignment_delay_seconds,
        vault_name=VAULT_NAME,
        secrets={DEMO_SECRET: secrets.token_urlsafe(18)},
        admin_principal_id=deployer.principal_id,
        wiring=Wiring(
            stack_id=stack_id,
            network=network,
            imds_network=IMDS_NETWORK,
            extra_hosts={MANAGEMENT_HOST: stand_in_address, vault_host: stand_in_address},
            ca_bundle_host_path=str(tls.bundle.resolve()),
        ),
    )
    server_folder = folder / "stand-in"
    server_folder.mkdir(parents=True, exist_ok=True)
    write_config(server_folder / server.CONFIG, config)
    (server_folder / server.CERTIFICATE).write_bytes(tls.certificate.read_bytes())
    key = server_folder / server.CERTIFICATE_KEY
    key.touch(mode=0o600)
    key.write_bytes(tls.key.read_bytes())
    make_signing_key(server_folder / server.SIGNING_KEY)
    deployer_secret = secrets.token_urlsafe(24)
    secret_file = server_folder / server.DEPLOYER_SECRET
    secret_file.touch(mode=0o600)
    secret_file.write_text(deployer_secret)
    record = AzureRecord(
        subscriptionId=subscription,
        resourceGroupName=RESOURCE_GROUP,
        location=config.location,
        keyVaultName=VAULT_NAME,
        keyVaultUri=f"https://{vault_host}/",
        workerIdentityId=worker.resource_id,
        workerIdentityClientId=worker.client_id,
        jobIdentityId=job.resource_id,
        jobIdentityClientId=job.client_id,
        subnetId=f"{group_id}/providers/Microsoft.Network/virtualNetworks/{network}/subnets/aci",
        storageAccountName=AZURITE_ACCOUNT,
        # Azurite serves the account in the path, on the host's address on the stack's network.
        storageBlobEndpoint=f"https://{gateway}:{blob_port}/{AZURITE_ACCOUNT}",
        flowCodeContainerName=FLOW_CODE_CONTAINER,
        workPoolName=DEFAULT_WORK_POOL,
    )
    write_record(folder / "azure.json", record)
    return LocalSide(config, record, tls, server_folder, deployer_secret)


def load_side(folder: Path) -> LocalSide:
    """The local side `make_local_side` wrote into ``folder``."""
    server_folder = folder / "stand-in"
    tls_folder = folder / "tls"
    return LocalSide(
        config=read_config(server_folder / server.CONFIG),
        record=read_record(folder / "azure.json", AzureRecord),
        tls=LocalTls(tls_folder / "cert.pem", tls_folder / "key.pem", tls_folder / "bundle.pem"),
        folder=server_folder,
        deployer_secret=(server_folder / server.DEPLOYER_SECRET).read_text().strip(),
    )
