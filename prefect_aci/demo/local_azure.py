"""The local Azure of a stack before anything is deployed, as a new Azure subscription is: a tenant,
a subscription, an empty resource group, and the deployer who owns it (the identity `make demo`
and `make deploy-all` sign in as); plus the TLS certificate the stand-ins serve for Azure's host
names. Everything else (identities, roles, the vault and its secrets, storage, the worker) is
what `prefect-aci deploy-all` deploys from arm/azuredeploy.json, as on Azure."""

import base64
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
from azure.mgmt.resource import ResourceManagementClient

from prefect_aci.local_aci import server
from prefect_aci.local_aci.authorization import (
    OWNER,
    assignment,
    definition_id,
)
from prefect_aci.local_aci.config import (
    MANAGEMENT_HOST,
    Identity,
    LocalAzure,
    Wiring,
    read_config,
    write_config,
)
from prefect_aci.local_aci.imds_router import NETWORK as IMDS_NETWORK
from prefect_aci.local_aci.tls import LocalTls, make_tls
from prefect_aci.local_aci.tokens import make_signing_key

RESOURCE_GROUP = "prefect-aci-local"
DEPLOYER = "prefect-aci-deployer"
# The demo secret's value `deploy-all` puts in the vault (PREFECT_ACI_DEMO_SECRET_VALUE).
DEMO_SECRET_FILE = "demo-secret"  # noqa: S105 (a file name)
# Every vault a template deploys answers at <name>.vault.azure.net.
VAULT_HOSTS = "*.vault.azure.net"
# Microsoft Graph, as far as `az role assignment list` asks it (prefect_aci.local_aci.app).
GRAPH_HOST = "graph.microsoft.com"
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
    tls: LocalTls
    folder: Path  # mounted into the stand-in's container
    deployer_secret: str

    def router_secret(self) -> str:
        """The secret with which the IMDS router vouches for a caller to this stack's stand-in."""
        return (self.folder / server.ROUTER_SECRET).read_text().strip()

    def demo_secret(self) -> str:
        """The demo secret's value the stack deploys (kept beside the deployer's secret, 0600)."""
        return (self.folder / DEMO_SECRET_FILE).read_text().strip()

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

    def resources(self, local_aci: str) -> ResourceManagementClient:
        """Resource Manager as the deployer (any resource by id, at any api-version)."""
        return ResourceManagementClient(
            self.credential(local_aci),
            self.config.subscription_id,
            base_url=local_aci,
            connection_verify=str(self.tls.bundle),
        )

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


def make_local_side(
    folder: Path,
    stack_id: str,
    network: str,
    stand_in_address: str,
    blob_endpoint: str,
    addresses: tuple[str, ...],
    role_assignment_delay_seconds: float = 0.0,
) -> LocalSide:
    """The local Azure before `deploy-all`: a tenant, a subscription, an empty resource group
    and its Owner (the deployer, signed in as users sign in with `az login`), Blob storage at
    ``blob_endpoint`` (Azurite), and the certificate for Azure's host names and ``addresses``."""
    subscription = str(uuid.uuid4())
    group_id = f"/subscriptions/{subscription}/resourceGroups/{RESOURCE_GROUP}"
    deployer = _identity(group_id, DEPLOYER)
    # Made here, as the user the stand-in runs as (a bind source the engine made would be root's).
    config_maps = folder / "config-maps"
    config_maps.mkdir(parents=True, exist_ok=True)
    tls = make_tls(
        folder / "tls",
        addresses=("127.0.0.1", *addresses),
        names=(MANAGEMENT_HOST, VAULT_HOSTS, GRAPH_HOST),
        days=CERTIFICATE_DAYS,
    )
    config = LocalAzure(
        tenant_id=str(uuid.uuid4()),
        subscription_id=subscription,
        resource_group=RESOURCE_GROUP,
        identities=[deployer],
        role_assignments=[
            assignment(deployer.principal_id, definition_id(subscription, OWNER), group_id)
        ],
        role_assignment_delay_seconds=role_assignment_delay_seconds,
        blob_endpoint=blob_endpoint,
        # The stack's own key for Azurite's account: the published one opens every Azurite.
        blob_account_key=base64.b64encode(secrets.token_bytes(64)).decode(),
        admin_principal_id=deployer.principal_id,
        wiring=Wiring(
            stack_id=stack_id,
            network=network,
            imds_network=IMDS_NETWORK,
            extra_hosts={MANAGEMENT_HOST: stand_in_address},
            ca_bundle_host_path=str(tls.bundle.resolve()),
            config_maps_folder=str(config_maps.resolve()),
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
    router_secret = server_folder / server.ROUTER_SECRET
    router_secret.touch(mode=0o600)
    router_secret.write_text(secrets.token_urlsafe(24))
    demo_secret = server_folder / DEMO_SECRET_FILE
    demo_secret.touch(mode=0o600)
    demo_secret.write_text(secrets.token_urlsafe(18))
    return LocalSide(config, tls, server_folder, deployer_secret)


def load_side(folder: Path) -> LocalSide:
    """The local side `make_local_side` wrote into ``folder``."""
    server_folder = folder / "stand-in"
    tls_folder = folder / "tls"
    return LocalSide(
        config=read_config(server_folder / server.CONFIG),
        tls=LocalTls(tls_folder / "cert.pem", tls_folder / "key.pem", tls_folder / "bundle.pem"),
        folder=server_folder,
        deployer_secret=(server_folder / server.DEPLOYER_SECRET).read_text().strip(),
    )
