"""Reads the demo secrets from Key Vault with the flow run's managed identity, and proves it
without ever logging a value.

On ACI the job identity's client id is in AZURE_CLIENT_ID (set by the work pool), so
DefaultAzureCredential picks that user-assigned identity. The vault comes from the Prefect
Variable `key_vault_url` (set by `prefect-aci register`), else from KEY_VAULT_URL; with neither
the run fails and says which to set. The local stack (`make demo`) has a vault too, so the flow
reads Key Vault the same way there.

A role assignment takes effect after a while (Microsoft Learn, "Troubleshoot Azure RBAC": changes
can take up to 10 minutes): on a first run just after `deploy-all`, Key Vault may still refuse the
job identity with ForbiddenByRbac. The flow retries that refusal, and only that one, for up to
`rbac_wait_seconds`, then fails with Key Vault's error.

`hold_seconds` keeps the run Running that long after it has read the vault (logged once), so that
a person can watch it in the UI and a test can kill its container or its worker mid-run.
"""

import os
import time

from azure.core.exceptions import HttpResponseError
from azure.identity import DefaultAzureCredential
from azure.keyvault.secrets import SecretClient
from prefect import flow, get_run_logger
from prefect.variables import Variable

DEMO_SECRETS = ["prefect-aci-demo-secret"]
KEY_VAULT_VARIABLE = "key_vault_url"
# How long a run waits, by default, for a new Key Vault role assignment to take effect.
RBAC_WAIT_SECONDS = 300
RBAC_RETRY_EVERY_SECONDS = 5


def init_process() -> str:
    """What runs as PID 1: tini when the work pool or image set it up right."""
    try:
        with open("/proc/1/cmdline", "rb") as cmdline:
            return cmdline.read().split(b"\0")[0].decode() or "unknown"
    except OSError:
        return "unknown"


def vault_url() -> str | None:
    return Variable.get(KEY_VAULT_VARIABLE, default=None) or os.environ.get("KEY_VAULT_URL")


def not_yet_authorised(exc: HttpResponseError) -> bool:
    """Key Vault's refusal for want of a role (which a new assignment may yet lift)."""
    return exc.status_code == 403 and "ForbiddenByRbac" in str(exc)


def read_from_key_vault(url: str, names: list[str], wait_seconds: float = 0) -> dict[str, str]:
    client = SecretClient(vault_url=url, credential=DefaultAzureCredential())
    deadline = time.monotonic() + wait_seconds
    told = False
    while True:
        try:
            return {name: client.get_secret(name).value or "" for name in names}
        except HttpResponseError as exc:
            if not not_yet_authorised(exc) or time.monotonic() >= deadline:
                raise
            if not told:
                get_run_logger().warning(
                    "Key Vault refused the identity (ForbiddenByRbac); a new role assignment "
                    "can take minutes to take effect: retrying for up to %d s",
                    wait_seconds,
                )
                told = True
            time.sleep(min(RBAC_RETRY_EVERY_SECONDS, max(0.0, deadline - time.monotonic())))


@flow(name="key-vault-demo")
def key_vault_demo(
    secret_names: list[str] = DEMO_SECRETS,
    rbac_wait_seconds: int = RBAC_WAIT_SECONDS,
    hold_seconds: int = 0,
) -> dict[str, int]:
    """Returns each secret's length: proof it was read, never the value. ``rbac_wait_seconds``:
    how long Key Vault's ForbiddenByRbac is retried (0: not at all). ``hold_seconds``: how long
    the run then stays Running before it returns (0: not at all)."""
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
    values = read_from_key_vault(url, secret_names, max(0, rbac_wait_seconds))
    proof = {name: len(value) for name, value in values.items()}
    for name, length in proof.items():
        logger.info("Read secret %s: %d characters (value not logged)", name, length)
    if hold_seconds > 0:
        logger.info("Holding for %d s before returning (hold_seconds)", hold_seconds)
        time.sleep(hold_seconds)
    return proof


if __name__ == "__main__":
    key_vault_demo()
