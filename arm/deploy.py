"""Deploy arm/azuredeploy.json with azure-mgmt-resource and azure-identity (no az CLI)."""

import json
import secrets
from dataclasses import dataclass
from pathlib import Path

import jwt
from azure.core.credentials import TokenCredential
from azure.core.exceptions import ClientAuthenticationError, HttpResponseError, ServiceRequestError
from azure.core.pipeline.transport import HttpTransport
from azure.mgmt.resource import ResourceManagementClient
from azure.mgmt.resource.resources.models import (
    Deployment,
    DeploymentMode,
    DeploymentProperties,
    DeploymentWhatIf,
    DeploymentWhatIfProperties,
    ResourceGroup,
)
from pydantic import SecretStr

from arm.settings import AzureTarget, InfraSettings
from prefect_aci.core.errors import UserError
from prefect_aci.core.records import AzureRecord, ImageRecord, azure_record_from_outputs
from prefect_aci.core.settings import GUID

DEPLOYMENT_NAME = "prefect-aci-infra"
MANAGEMENT_SCOPE = "https://management.azure.com/.default"
LOGIN_HINT = (
    "log in with `az login`, or set AZURE_TENANT_ID, AZURE_CLIENT_ID and AZURE_CLIENT_SECRET for "
    "a service principal, or run where a managed identity is assigned"
)


def check_worker_image(settings: InfraSettings, image: ImageRecord | None) -> None:
    if settings.deploy_worker and (image is None or not image.reference):
        raise UserError(
            "the worker needs a pushed image: run `make push REGISTRY=...` first "
            "(it records the pinned reference in build/image.json), or set "
            "DEPLOY_WORKER=false"
        )


@dataclass(frozen=True)
class Principal:
    """Who runs the deployment: gets rights to upload flow code and push the image."""

    object_id: str
    kind: str  # the roleAssignments principalType: User or ServicePrincipal


def principal_of(token: str) -> Principal | None:
    """The signed-in principal from an Azure Resource Manager token's claims (read, not verified:
    ARM verifies it); None when the token is not a JWT carrying an object id."""
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        return None
    object_id = claims.get("oid")
    if not isinstance(object_id, str) or not GUID.match(object_id):
        return None
    # idtyp is "app" for service principals and managed identities, "user" for people; tokens
    # without it are delegated (a person) when they carry scopes.
    kind = claims.get("idtyp") or ("user" if "scp" in claims else "app")
    return Principal(object_id, "ServicePrincipal" if kind == "app" else "User")


def parameters(
    settings: InfraSettings, image: ImageRecord | None, deployer: Principal | None = None
) -> dict:
    """ARM deployment parameters. Secrets go only into this request, never into a file."""
    check_worker_image(settings, image)
    demo = settings.demo_secret_value or SecretStr(secrets.token_urlsafe(24))
    values = {
        "prefix": settings.prefix,
        "prefectApiUrl": settings.prefect_api_url,
        "prefectApiKey": settings.prefect_api_key.get_secret_value(),
        "demoSecretValue": demo.get_secret_value(),
        "workPoolName": settings.work_pool_name,
        "deployRegistry": settings.deploy_registry,
        "registrySku": settings.registry_sku,
        "deployWorker": settings.deploy_worker,
        "enablePurgeProtection": settings.enable_purge_protection,
        "workerImage": image.reference if settings.deploy_worker and image else "",
    }
    if deployer:
        values["deployerPrincipalId"] = deployer.object_id
        values["deployerPrincipalType"] = deployer.kind
    if settings.key_vault_name:
        values["keyVaultName"] = settings.key_vault_name
    if settings.azure_location:
        values["location"] = settings.azure_location
    return {name: {"value": value} for name, value in values.items()}


@dataclass
class Infra:
    settings: AzureTarget
    client: ResourceManagementClient
    deployer: Principal | None = None

    @classmethod
    def connect(
        cls,
        settings: AzureTarget,
        credential: TokenCredential,
        transport: HttpTransport | None = None,
    ) -> "Infra":
        try:
            token = credential.get_token(MANAGEMENT_SCOPE).token
        except ClientAuthenticationError as exc:
            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
            raise UserError(f"no Azure credential ({reason}); {LOGIN_HINT}") from None
        kwargs = {"transport": transport} if transport else {}
        client = ResourceManagementClient(credential, settings.azure_subscription_id, **kwargs)
        return cls(settings=settings, client=client, deployer=principal_of(token))

    def ensure_resource_group(self) -> None:
        group = self.settings.azure_resource_group
        if _arm(lambda: self.client.resource_groups.check_existence(group)):
            return
        if not self.settings.azure_location:
            raise UserError(
                f"resource group {group} does not exist; set AZURE_LOCATION (e.g. "
                "westeurope) to create it"
            )
        _arm(
            lambda: self.client.resource_groups.create_or_update(
                group,
                ResourceGroup(
                    location=self.settings.azure_location, tags={"managed-by": "prefect-aci"}
                ),
            )
        )

    def what_if(self, template: dict, params: dict) -> list[tuple[str, str]]:
        """(change type, resource id) for each resource ARM would touch."""
        request = DeploymentWhatIf(
            properties=DeploymentWhatIfProperties(
                mode=DeploymentMode.INCREMENTAL, template=template, parameters=params
            )
        )
        result = _arm(
            lambda: self.client.deployments.begin_what_if(
                self.settings.azure_resource_group, DEPLOYMENT_NAME, request
            ).result()
        )
        return [(str(change.change_type), change.resource_id) for change in result.changes or []]

    def deploy(self, template: dict, params: dict) -> AzureRecord:
        """Deploy incrementally; return the outputs as the record the next stages read."""
        request = Deployment(
            properties=DeploymentProperties(
                mode=DeploymentMode.INCREMENTAL, template=template, parameters=params
            )
        )
        result = _arm(
            lambda: self.client.deployments.begin_create_or_update(
                self.settings.azure_resource_group, DEPLOYMENT_NAME, request
            ).result()
        )
        state = result.properties.provisioning_state
        if state != "Succeeded":
            raise UserError(
                f"deployment {DEPLOYMENT_NAME} ended {state}; see the resource "
                "group's deployments in the Azure portal"
            )
        outputs = result.properties.outputs or {}
        return azure_record_from_outputs({name: out["value"] for name, out in outputs.items()})

    def destroy(self) -> None:
        group = self.settings.azure_resource_group
        if not _arm(lambda: self.client.resource_groups.check_existence(group)):
            raise UserError(f"resource group {group} does not exist; nothing to destroy")
        _arm(lambda: self.client.resource_groups.begin_delete(group).result())


def _arm(call):
    """Run an ARM call; turn its failures into one line that says what went wrong."""
    try:
        return call()
    except ClientAuthenticationError as exc:
        raise UserError(f"Azure refused the credential ({_first(exc)}); {LOGIN_HINT}") from None
    except HttpResponseError as exc:
        code = getattr(getattr(exc, "error", None), "code", None) or exc.status_code
        raise UserError(f"Azure Resource Manager said {code}: {_first(exc)}") from None
    except ServiceRequestError as exc:
        raise UserError(
            f"cannot reach Azure Resource Manager ({_first(exc)}); check the network"
        ) from None


def _first(exc: Exception) -> str:
    message = getattr(getattr(exc, "error", None), "message", None) or str(exc)
    return (message.strip().splitlines() or [type(exc).__name__])[0][:300]


def load_template(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot read {path} as strict JSON ({exc})") from None
