"""The ACI work pool's base job template: prefect-azure's default, set up for this project."""

import copy

from prefect_azure.workers.container_instance import AzureContainerWorker

from blocks.inputs import AzureSide

WORK_POOL_TYPE = "azure-container-instance"
# ACI's command replaces the image ENTRYPOINT, and the worker puts `entrypoint` first as ONE
# argument: tini goes there, and the rest of the image's entrypoint leads the command.
ENTRYPOINT = "/usr/bin/tini"
COMMAND = "-g -- /opt/prefect/entrypoint.sh prefect flow-run execute"
# Pulling a 130 MB image into a new container group in a VNet takes minutes, not seconds.
START_TIMEOUT_SECONDS = 600
CPU = 1.0
MEMORY_GB = 2.0


def base_job_template(
    azure: AzureSide, image_reference: str, credentials_block_id: str, acr_login_server: str | None
) -> dict:
    """prefect-azure's default template with our defaults on its variables."""
    template = copy.deepcopy(AzureContainerWorker.get_default_base_job_template())
    defaults = {
        "image": image_reference,
        "resource_group_name": azure.resource_group,
        "subscription_id": azure.subscription_id,
        "identities": [azure.job_identity_id],
        "subnet_ids": [azure.subnet_id],
        "entrypoint": ENTRYPOINT,
        "command": COMMAND,
        "env": {
            "AZURE_CLIENT_ID": azure.job_identity_client_id,
            "KEY_VAULT_URL": azure.key_vault_url,
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
    properties = template["variables"]["properties"]
    for name, value in defaults.items():
        properties[name]["default"] = value
    return template
