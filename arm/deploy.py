"""Deploy arm/azuredeploy.json with azure-mgmt-resource and azure-identity (no az CLI)."""

import json
import re
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import jwt
from azure.core.credentials import TokenCredential
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceNotFoundError,
    ServiceRequestError,
)
from azure.core.pipeline.transport import HttpTransport
from azure.mgmt.containerinstance import ContainerInstanceManagementClient
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

from arm.settings import AzureTarget, InfraSettings, standby_pool_refusal
from prefect_aci.core.arm_template import arm_guid
from prefect_aci.core.azure import LOGIN_HINT
from prefect_aci.core.console import console
from prefect_aci.core.errors import UserError, first_line
from prefect_aci.core.paths import PROJECT_ROOT
from prefect_aci.core.records import (
    AzureRecord,
    ImageRecord,
    PublishedImage,
    azure_record_from_outputs,
    published,
)
from prefect_aci.core.settings import GUID

TEMPLATE = PROJECT_ROOT / "arm" / "azuredeploy.json"
DEPLOYMENT_NAME = "prefect-aci-infra"
MANAGEMENT_SCOPE = "https://management.azure.com/.default"
# What the template names (its variables workerGroupName and workerRoleName, the worker container,
# the custom role's display name); tests/arm checks they agree.
WORKER_CONTAINER = "prefect-worker"
STANDBY_WORKER_CONTAINER = "prefect-standby-worker"
WORKER_ROLE_SEED = "prefect-aci-worker-role"
WORKER_ROLE_PREFIX = "Prefect ACI worker ("
# The template's second custom role: assigning the job identity and joining the subnet, held by
# the worker on those two resources only.
LINKED_ROLE_SEED = "prefect-aci-worker-linked-role"
LINKED_ROLE_PREFIX = "Prefect ACI worker, linked ("
# The role the job identity gets when the sweep runs as a scheduled deployment on the pool
# (template parameter scheduledSweep): arm/sweep.py SWEEP_ACTIONS and no more.
SWEEPER_ROLE_SEED = "prefect-aci-sweeper-role"
SWEEPER_ROLE_PREFIX = "Prefect ACI sweeper ("
# (guid seed, display name prefix) of each custom role the template makes.
CUSTOM_ROLES = (
    (WORKER_ROLE_SEED, WORKER_ROLE_PREFIX),
    (LINKED_ROLE_SEED, LINKED_ROLE_PREFIX),
    (SWEEPER_ROLE_SEED, SWEEPER_ROLE_PREFIX),
)
ROLE_DEFINITIONS_API = "2022-04-01"
# The template's Key Vault apiVersion (tests/arm checks they agree): the existing vault is read
# with it before a deployment.
KEY_VAULT_API = "2026-02-01"
# The Network provider's refusal to delete a subnet something still uses. Deleting the group
# meets it while ACI still holds the delegated subnet: its service association link outlives the
# container groups by some minutes, and ACI releases it by itself.
SUBNET_IN_USE = "InUseSubnetCannotBeDeleted"
DESTROY_ATTEMPTS = 4
DESTROY_RETRY_SECONDS = 120.0


def worker_image(settings: InfraSettings, image: ImageRecord | None) -> PublishedImage | None:
    """The pushed image the worker runs; None when no worker is deployed."""
    if not settings.deploy_worker:
        return None
    if image is None or image.published is None:
        raise UserError(
            "the worker needs a pushed image: run `make push REGISTRY=...` first "
            "(it records the pinned reference in build/image.json), or set "
            "PREFECT_ACI_DEPLOY_WORKER=false"
        )
    return published(image)


def worker_group_name(prefix: str) -> str:
    return f"{prefix}-worker"


def standby_worker_group_name(prefix: str) -> str:
    """The standby pool's worker (template variable standbyWorkerGroupName)."""
    return f"{prefix}-standby-worker"


@dataclass(frozen=True)
class WorkerRole:
    """The template's custom role: a subscription-level resource that outlives the group."""

    id: str
    name: str
    seed: str = WORKER_ROLE_SEED


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


def secret_value(value: SecretStr | None) -> str:
    """A secure parameter's value: empty when unset (the template then leaves it out)."""
    return value.get_secret_value() if value else ""


def parameters(
    settings: InfraSettings, image: ImageRecord | None, deployer: Principal | None = None
) -> dict:
    """ARM deployment parameters. Secrets go only into this request, never into a file."""
    refusal = standby_pool_refusal(
        settings.standby_pool_size, settings.standby_pool_provider_principal_id
    )
    if refusal:
        raise UserError(refusal)
    worker = worker_image(settings, image)
    demo = settings.demo_secret_value or SecretStr(secrets.token_urlsafe(24))
    values = {
        "prefix": settings.prefix,
        "prefectApiUrl": settings.prefect_api_url,
        "prefectApiKey": secret_value(settings.prefect_api_key),
        "prefectApiAuthString": secret_value(settings.prefect_api_auth_string),
        "demoSecretValue": demo.get_secret_value(),
        "workPoolName": settings.work_pool_name,
        "deployRegistry": settings.deploy_registry,
        "registrySku": settings.registry_sku,
        "deployWorker": settings.deploy_worker,
        "scheduledSweep": settings.sweep_every is not None,
        "enablePurgeProtection": settings.enable_purge_protection,
        "workerImage": worker.reference if worker else "",
        "workerCpu": settings.worker_cpu,
        "workerMemoryInGB": settings.worker_memory_gb,
        "softDeleteRetentionInDays": settings.key_vault_retention_days,
        "flowRunCpu": settings.flow_run_cpu,
        "flowRunMemoryInGB": settings.flow_run_memory_gb,
        "standbyPoolSize": settings.standby_pool_size,
        "standbyPoolProviderPrincipalId": settings.standby_pool_provider_principal_id,
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
    containers: ContainerInstanceManagementClient
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
            raise UserError(f"no Azure credential ({first_line(exc)}); {LOGIN_HINT}") from None
        kwargs: dict = {"base_url": settings.arm_endpoint}
        if transport:
            kwargs["transport"] = transport
        subscription = settings.azure_subscription_id
        return cls(
            settings=settings,
            client=ResourceManagementClient(credential, subscription, **kwargs),
            containers=ContainerInstanceManagementClient(credential, subscription, **kwargs),
            deployer=principal_of(token),
        )

    def ensure_resource_group(self) -> None:
        group = self.settings.azure_resource_group
        if arm_call(lambda: self.client.resource_groups.check_existence(group)):
            return
        if not self.settings.azure_location:
            raise UserError(
                f"resource group {group} does not exist; set AZURE_LOCATION (e.g. "
                "westeurope) to create it"
            )
        arm_call(
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
            properties=_incremental(DeploymentWhatIfProperties, template, params)
        )
        result = arm_call(
            lambda: self.client.deployments.begin_what_if(
                self.settings.azure_resource_group, DEPLOYMENT_NAME, request
            ).result()
        )
        return [(str(change.change_type), change.resource_id) for change in result.changes or []]

    def workers_to_replace(self, params: dict) -> dict[str, str]:
        """What is wrong with each existing worker group (the plain pool's, and the standby
        pool's) when ``params`` ask for another CPU or memory size (ACI cannot change either in
        place: the deployment would fail), by group name; empty when none has another size."""
        values = {name: param["value"] for name, param in params.items()}
        if not values["deployWorker"]:
            return {}
        wanted = (float(values["workerCpu"]), float(values["workerMemoryInGB"]))
        stale = {}
        workers = (
            (worker_group_name(values["prefix"]), WORKER_CONTAINER),
            (standby_worker_group_name(values["prefix"]), STANDBY_WORKER_CONTAINER),
        )
        for name, container in workers:
            try:
                group = arm_call(
                    lambda name=name: self.containers.container_groups.get(
                        self.settings.azure_resource_group, name
                    )
                )
            except NotFound:
                continue
            worker = next((c for c in group.containers if c.name == container), None)
            if worker is None:
                continue
            now = (worker.resources.requests.cpu, worker.resources.requests.memory_in_gb)
            if now != wanted:
                stale[name] = (
                    f"worker group {name} runs with {now[0]:g} CPU and {now[1]:g} GB, and ACI "
                    f"cannot change CPU or memory in place (asked for {wanted[0]:g} CPU, "
                    f"{wanted[1]:g} GB)"
                )
        return stale

    def worker_to_replace(self, params: dict) -> str | None:
        """Why the existing worker groups cannot take ``params`` as they are, on one line; None
        when they can (or there is none)."""
        stale = self.workers_to_replace(params)
        return "; ".join(stale.values()) or None

    def vault_retention(self, params: dict) -> tuple[str, int] | None:
        """The existing Key Vault's name and soft-delete retention in days when ``params`` ask
        for another: Azure sets it only when a vault is created ("Once set, the retention policy
        interval cannot be changed": Microsoft Learn, "Azure Key Vault soft-delete"). None when
        there is no such vault, or it keeps what is asked.

        The vault is the one PREFECT_ACI_KEY_VAULT_NAME names, else the one the last deployment
        of the template made when its name is the default for this prefix (the default's
        uniqueString() is ARM's own hash, which cannot be computed here)."""
        values = {name: param["value"] for name, param in params.items()}
        name = values.get("keyVaultName") or self._default_vault(values["prefix"])
        if not name:
            return None
        vault_id = (
            f"/subscriptions/{self.settings.azure_subscription_id}/resourceGroups/"
            f"{self.settings.azure_resource_group}/providers/Microsoft.KeyVault/vaults/{name}"
        )
        try:
            vault = arm_call(lambda: self.client.resources.get_by_id(vault_id, KEY_VAULT_API))
        except NotFound:
            return None
        kept = (vault.properties or {}).get("softDeleteRetentionInDays")
        if not isinstance(kept, int) or kept == values["softDeleteRetentionInDays"]:
            return None
        return name, kept

    def _default_vault(self, prefix: str) -> str | None:
        """The vault name the last deployment of the template reported, when it has the
        template's default form for ``prefix`` (<prefix>kv + 13 characters of uniqueString)."""
        try:
            last = arm_call(
                lambda: self.client.deployments.get(
                    self.settings.azure_resource_group, DEPLOYMENT_NAME
                )
            )
        except NotFound:
            return None
        output = ((last.properties.outputs or {}).get("keyVaultName") or {}).get("value")
        default = re.compile(rf"^{re.escape(prefix.lower())}kv[a-z0-9]{{13}}$")
        return output if isinstance(output, str) and default.match(output) else None

    def delete_container_group(self, name: str) -> None:
        arm_call(
            lambda: self.containers.container_groups.begin_delete(
                self.settings.azure_resource_group, name
            ).result()
        )

    def deploy(self, template: dict, params: dict, replace_worker: bool = False) -> AzureRecord:
        """Deploy incrementally; return the outputs as the record the next stages read.

        A worker group of another size is deleted first with ``replace_worker``, else refused
        before anything is sent: its flow runs go on in their own groups, and the worker is away
        until the deployment has made the new one. Another Key Vault retention than the
        existing vault's is refused before anything is sent too."""
        vault = self.vault_retention(params)
        if vault:
            name, kept = vault
            raise UserError(
                f"Key Vault {name} keeps deleted secrets {kept} days and Azure cannot change that "
                f"on an existing vault (PREFECT_ACI_KEY_VAULT_RETENTION_DAYS asks for "
                f"{params['softDeleteRetentionInDays']['value']}); set "
                f"PREFECT_ACI_KEY_VAULT_RETENTION_DAYS={kept}, or PREFECT_ACI_KEY_VAULT_NAME to "
                "a new vault's name"
            )
        stale = self.workers_to_replace(params)
        if stale and not replace_worker:
            raise UserError(
                f"{'; '.join(stale.values())}; run `prefect-aci azure deploy --replace-worker` "
                "(make deploy-infra DEPLOY_FLAGS=--replace-worker) to delete and recreate it, or "
                "set PREFECT_ACI_WORKER_CPU and PREFECT_ACI_WORKER_MEMORY_GB back"
            )
        for name in stale:
            self.delete_container_group(name)
        request = Deployment(properties=_incremental(DeploymentProperties, template, params))
        result = arm_call(
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

    def destroy(
        self,
        attempts: int = DESTROY_ATTEMPTS,
        wait: float = DESTROY_RETRY_SECONDS,
        notify: Callable[[str], None] | None = None,
    ) -> list[WorkerRole]:
        """Delete the resource group; return the template's custom roles, which survive it.

        A deletion refused because ACI still holds the delegated subnet is tried again, up to
        ``attempts`` times in all, ``wait`` seconds apart (``notify`` hears of each wait)."""
        group = self.settings.azure_resource_group
        if not arm_call(lambda: self.client.resource_groups.check_existence(group)):
            raise UserError(f"resource group {group} does not exist; nothing to destroy")
        roles = self.worker_roles()
        notify = notify or _warn
        for attempt in range(1, attempts + 1):
            try:
                arm_call(lambda: self.client.resource_groups.begin_delete(group).result())
                return roles
            except ArmRefused as exc:
                if SUBNET_IN_USE not in exc.codes:
                    raise
            if attempt < attempts:
                notify(
                    f"resource group {group} not deleted yet: ACI still holds its subnet "
                    f"({SUBNET_IN_USE}); trying again in {wait:g} s ({attempt}/{attempts})"
                )
                time.sleep(wait)
        raise UserError(
            f"resource group {group} is not deleted: ACI still holds its subnet "
            f"({SUBNET_IN_USE}, {attempts} attempts) and releases it by itself once its "
            "container groups are gone; wait a few minutes and run make destroy CONFIRM=yes again"
        )

    def worker_role(self) -> WorkerRole | None:
        """The template's custom worker role for this group (the one at the resource group)."""
        return next((r for r in self.worker_roles() if r.seed == WORKER_ROLE_SEED), None)

    def worker_roles(self) -> list[WorkerRole]:
        """The template's custom roles for this group, each found by the id the template gives
        it (guid of the group's id, as ARM spells it) and kept when its name is the template's."""
        group = arm_call(
            lambda: self.client.resource_groups.get(self.settings.azure_resource_group)
        )
        found = []
        for seed, prefix in CUSTOM_ROLES:
            role_id = (
                f"/subscriptions/{self.settings.azure_subscription_id}/providers/"
                f"Microsoft.Authorization/roleDefinitions/{arm_guid(group.id, seed)}"
            )
            try:
                role = arm_call(
                    lambda role_id=role_id: self.client.resources.get_by_id(
                        role_id, ROLE_DEFINITIONS_API
                    )
                )
            except NotFound:
                continue
            name = str((role.properties or {}).get("roleName", ""))
            if name.startswith(prefix):
                found.append(WorkerRole(role_id, name, seed))
        return found

    def delete_role(self, role: WorkerRole) -> None:
        try:
            arm_call(
                lambda: self.client.resources.begin_delete_by_id(
                    role.id, ROLE_DEFINITIONS_API
                ).result()
            )
        except UserError as exc:
            raise UserError(
                f"the resource group is deleted, but not the worker's custom role {role.name!r} "
                f"({exc}); delete it with `az role definition delete --name "
                f"{role.id.rsplit('/', 1)[-1]}`"
            ) from None


def _incremental(kind, template: dict, params: dict):
    """The properties of a deployment (or of its what-if): incremental, so that what the
    template does not name in the group is left alone."""
    return kind(mode=DeploymentMode.INCREMENTAL, template=template, parameters=params)


class NotFound(UserError):
    """ARM answered 404: the caller decides whether that is a problem."""


class ArmRefused(UserError):
    """ARM answered with an error; ``codes`` holds its code and those of its details, nested
    ones included (a resource group deletion reports its resources' errors there)."""

    def __init__(self, message: str, codes: frozenset[str]):
        super().__init__(message)
        self.codes = codes


def error_codes(error) -> Iterator[str]:
    """The codes of an ARM error (azure-core's ODataV4Format, or its JSON as a dict) and of its
    details, also when a detail's message is itself an ARM error as JSON."""
    if isinstance(error, dict):
        inner = error.get("error")
        error = inner if isinstance(inner, dict) else error
        code, message, details = error.get("code"), error.get("message"), error.get("details")
    elif error is not None:
        code, message, details = error.code, error.message, error.details
    else:
        return
    if isinstance(code, str):
        yield code
    if isinstance(message, str) and message.startswith("{"):
        yield from error_codes(_json_object(message))
    for detail in details if isinstance(details, list) else []:
        yield from error_codes(detail)


def _json_object(text: str) -> dict | None:
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _warn(message: str) -> None:
    console.print(f"[yellow]warning:[/] {message}", highlight=False)


def arm_call(call):
    """Run an ARM call; turn its failures into one line that says what went wrong."""
    try:
        return call()
    except ResourceNotFoundError as exc:
        raise NotFound(
            f"Azure Resource Manager found no such resource: {first_line(exc, 300)}"
        ) from None
    except ClientAuthenticationError as exc:
        raise UserError(
            f"Azure refused the credential ({first_line(exc, 300)}); {LOGIN_HINT}"
        ) from None
    except HttpResponseError as exc:
        code = getattr(getattr(exc, "error", None), "code", None) or exc.status_code
        raise ArmRefused(
            f"Azure Resource Manager said {code}: {first_line(exc, 300)}",
            frozenset(error_codes(getattr(exc, "error", None))),
        ) from None
    except ServiceRequestError as exc:
        raise UserError(
            f"cannot reach Azure Resource Manager ({first_line(exc, 300)}); check the network"
        ) from None


def load_template(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot read {path} as strict JSON ({exc})") from None
