"""Blob storage for the local Azure: a storage account the template deploys is Azurite.

Its blob endpoint is Azurite's (one account, devstoreaccount1, served in the path), and each blob
container the template deploys is created there, as the Storage provider makes it on Azure. The
provider uses the account's key, as Azure's control plane needs no data role; what reads and
writes blobs afterwards signs in with OAuth.
"""

from contextlib import suppress

from azure.core.exceptions import AzureError, ResourceExistsError
from azure.storage.blob import ContainerClient

from prefect_aci.local_aci.groups import GroupError
from prefect_aci.local_aci.resources import Recorded

BLOB_CONTAINERS = "Microsoft.Storage/storageAccounts/blobServices/containers"
# Azurite's one account and its published development key (Microsoft Learn, "Use the Azurite
# emulator": "Well-known storage account and key"), for an Azurite started without a key of its
# own (AZURITE_ACCOUNTS); a demo stack gives its Azurite a random one (LocalAzure.blob_account_key).
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)


def blob_containers(endpoint: str, verify: str, account_key: str | None = None):
    """A store listener that makes each deployed blob container in Azurite at ``endpoint``
    (``verify``: the CA that signed Azurite's certificate; ``account_key``: its account's key,
    None for the published development key)."""
    key = account_key or AZURITE_KEY

    def listener(event: str, recorded: Recorded) -> None:
        if event != "recorded" or recorded.type.lower() != BLOB_CONTAINERS.lower():
            return
        client = ContainerClient(
            account_url=endpoint,
            container_name=recorded.body["name"],
            credential={"account_name": AZURITE_ACCOUNT, "account_key": key},
            connection_verify=verify,
        )
        try:
            with suppress(ResourceExistsError):
                client.create_container()
        except AzureError as exc:
            raise GroupError(
                "StorageUnavailable",
                f"the blob container {recorded.body['name']} could not be made in Azurite at "
                f"{endpoint}: {type(exc).__name__}",
            ) from None

    return listener
