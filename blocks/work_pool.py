"""The ACI work pool's base job template: prefect-azure's default, with our defaults on its
variables, each checked against the worker's own `AzureContainerVariables` model so that a
misspelt key or a wrong type fails here, not in a flow run.

What decides who a flow run is and where it runs (its identities, the registry credential, the
subscription, the resource group, the subnets, the credentials block) is fixed in the template's
`job_configuration` and not offered as a variable: a deployment or a flow run may set its image,
command, env and size, but cannot start a group as the worker's identity or outside the pool's
subnet (Prefect renders only variables the template names)."""

import copy

from prefect_aci_runtime.worker import AzureContainerStandbyWorker, StandbyVariables
from prefect_azure.workers.container_instance import AzureContainerVariables, AzureContainerWorker
from pydantic import BaseModel, ValidationError

from blocks.inputs import HEARTBEAT_SECONDS
from prefect_aci.core.errors import UserError
from prefect_aci.core.records import AzureRecord

# ACI's command replaces the image ENTRYPOINT, and the worker puts `entrypoint` first as ONE
# argument: tini goes there, and the rest of the image's entrypoint leads the command.
ENTRYPOINT = "/usr/bin/tini"
COMMAND = "-g -- /opt/prefect/entrypoint.sh prefect flow-run execute"
# Pulling a 130 MB image into a new container group in a VNet takes minutes, not seconds.
START_TIMEOUT_SECONDS = 600
CPU = 1.0
MEMORY_GB = 2.0
# DefaultAzureCredential otherwise probes IMDS with a 1 s timeout and no retry before it uses the
# managed identity (azure-identity 1.27), and IMDS in a starting container group can be slower.
# Naming the one credential a flow run on ACI has skips the probe.
MANAGED_IDENTITY_ONLY = "ManagedIdentityCredential"
# Prefect's engine emits a `prefect.flow-run.heartbeat` event this often while a run is running;
# register's automation marks a run Crashed when they stop (blocks/automation.py).
HEARTBEAT_ENV = "PREFECT_FLOWS_HEARTBEAT_FREQUENCY"
# A block reference, resolved by the worker; the model would want the block itself.
BLOCK_REFERENCES = ("aci_credentials",)
# What no deployment or flow run may change: fixed in job_configuration, not variables.
FIXED = (
    "identities",
    "image_registry",
    "subscription_id",
    "resource_group_name",
    "subnet_ids",
    "aci_credentials",
)


def pool_defaults(
    azure: AzureRecord,
    image_reference: str,
    credentials_block_id: str,
    acr_login_server: str | None,
    extra_env: dict[str, str] | None = None,
    heartbeat_seconds: int = HEARTBEAT_SECONDS,
) -> dict:
    """Our defaults for the pool's variables, by prefect-azure's variable names; ``extra_env``
    (the user's PREFECT_ACI_POOL_ENV) joins the env, ours winning on a shared name."""
    defaults = {
        "image": image_reference,
        "resource_group_name": azure.resource_group,
        "subscription_id": azure.subscription_id,
        "identities": [azure.job_identity_id],
        "subnet_ids": [azure.subnet_id],
        "entrypoint": ENTRYPOINT,
        "command": COMMAND,
        "env": {
            **(extra_env or {}),
            "AZURE_CLIENT_ID": azure.job_identity_client_id,
            "AZURE_TOKEN_CREDENTIALS": MANAGED_IDENTITY_ONLY,
            "KEY_VAULT_URL": azure.key_vault_uri,
            HEARTBEAT_ENV: str(heartbeat_seconds),
        },
        "task_start_timeout_seconds": START_TIMEOUT_SECONDS,
        "cpu": CPU,
        "memory": MEMORY_GB,
        "aci_credentials": {"$ref": {"block_document_id": credentials_block_id}},
    }
    if acr_login_server:
        # The same identity in `identities` and here, holding AcrPull: ACI pulls with it.
        defaults["image_registry"] = {
            "registry_url": acr_login_server,
            "identity": azure.job_identity_id,
        }
    return defaults


# The standby pool's claim names the template's profile and pool: fixed like the identities, so a
# deployment cannot claim from another pool or with another profile.
STANDBY_FIXED = (
    "standby_pool_id",
    "container_group_profile_id",
    "container_group_profile_revision",
)


def check_defaults(defaults: dict, model: type[BaseModel] = AzureContainerVariables) -> None:
    """Every key is one of the worker's variables, and every value has the type it takes."""
    known = model.model_fields
    unknown = sorted(set(defaults) - set(known))
    if unknown:
        raise UserError(f"work pool defaults name unknown ACI job variables: {', '.join(unknown)}")
    values = {k: v for k, v in defaults.items() if k not in BLOCK_REFERENCES}
    try:
        model.model_validate(values)
    except ValidationError as exc:
        # Variables we leave to prefect-azure's own defaults are not ours to report.
        problems = [e for e in exc.errors() if e["loc"] and e["loc"][0] in values]
        if problems:
            first = problems[0]
            where = ".".join(str(part) for part in first["loc"])
            raise UserError(f"work pool default {where}: {first['msg']}") from None


def base_job_template(
    azure: AzureRecord,
    image_reference: str,
    credentials_block_id: str,
    acr_login_server: str | None,
    extra_env: dict[str, str] | None = None,
    heartbeat_seconds: int = HEARTBEAT_SECONDS,
    *,
    standby: bool = False,
) -> dict:
    """prefect-azure's default template with our defaults on its variables, and what must not
    vary per run (FIXED) written into its job configuration instead of offered as variables.

    ``standby``: the template of the standby pool's work pool instead (the claiming worker's,
    prefect_aci_runtime.worker), whose runs claim from ``azure``'s standby pool and profile."""
    defaults = pool_defaults(
        azure, image_reference, credentials_block_id, acr_login_server, extra_env, heartbeat_seconds
    )
    worker, model, fixed = AzureContainerWorker, AzureContainerVariables, FIXED
    if standby:
        if not (azure.standby_pool_id and azure.container_group_profile_id):
            raise UserError(
                "the deployment made no standby pool: set PREFECT_ACI_STANDBY_POOL_SIZE above 0 "
                "and run `make deploy-infra` first"
            )
        defaults |= {
            "standby_pool_id": azure.standby_pool_id,
            "container_group_profile_id": azure.container_group_profile_id,
            "container_group_profile_revision": azure.container_group_profile_revision,
        }
        worker, model, fixed = AzureContainerStandbyWorker, StandbyVariables, FIXED + STANDBY_FIXED
    check_defaults(defaults, model)
    template = copy.deepcopy(worker.get_default_base_job_template())
    variables = template["variables"]
    properties = variables["properties"]
    for name in fixed:
        template["job_configuration"][name] = defaults.pop(name, None)
        properties.pop(name, None)
    variables["required"] = [r for r in variables.get("required", []) if r not in fixed]
    for name, value in defaults.items():
        properties[name]["default"] = value
    return template
