"""Reads the demo secrets from Key Vault with the flow run's managed identity, and proves it
without ever logging a value.

On ACI the job identity's client id is in AZURE_CLIENT_ID (set by the work pool), so
DefaultAzureCredential picks that user-assigned identity. The vault comes from the Prefect
Variable `key_vault_url` (set by `prefect-aci register`), else from KEY_VAULT_URL; with neither
the run fails and says which to set. The local stack (`make demo`) has a vault too, so the flow
reads Key Vault the same way there.
"""

import os

from azure.identity import DefaultAzureCredential
from azure.keyvault.secrets import SecretClient
from prefect import flow, get_run_logger
from prefect.variables import Variable

DEMO_SECRETS = ["prefect-aci-demo-secret"]
KEY_VAULT_VARIABLE = "key_vault_url"


def init_process() -> str:
    """What runs as PID 1: tini when the work pool or image set it up right."""
    try:
        with open("/proc/1/cmdline", "rb") as cmdline:
            return cmdline.read().split(b"\0")[0].decode() or "unknown"
    except OSError:
        return "unknown"


def vault_url() -> str | None:
    return Variable.get(KEY_VAULT_VARIABLE, default=None) or os.environ.get("KEY_VAULT_URL")


def read_from_key_vault(url: str, names: list[str]) -> dict[str, str]:
    client = SecretClient(vault_url=url, credential=DefaultAzureCredential())
    return {name: client.get_secret(name).value or "" for name in names}


@flow(name="key-vault-demo")
def key_vault_demo(secret_names: list[str] = DEMO_SECRETS) -> dict[str, int]:
    """Returns each secret's length: proof it was read, never the value."""
    logger = get_run_logger()
    logger.info("Process 1 of this container is %s", init_process())
    url = vault_url()
    if not url:
        raise ValueError(
            f"no Key Vault to read: set the Prefect Variable {KEY_VAULT_VARIABLE!r} "
            "(prefect-aci register does) or KEY_VAULT_URL in the work pool's env"
        )
    identity = os.environ.get("AZURE_CLIENT_ID") or "the default Azure credential"
    logger.info("Reading %d secret(s) from Key Vault %s as %s", len(secret_names), url, identity)
    values = read_from_key_vault(url, secret_names)
    proof = {name: len(value) for name, value in values.items()}
    for name, length in proof.items():
        logger.info("Read secret %s: %d characters (value not logged)", name, length)
    return proof


if __name__ == "__main__":
    key_vault_demo()
