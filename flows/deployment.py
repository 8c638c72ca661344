"""The demo flow's deployment, the same locally and on Azure: its code goes to a blob container,
and the deployment pulls it from there through the AzureBlobStorageContainer block."""

import time
from collections.abc import Callable
from pathlib import Path
from uuid import UUID

from azure.core.exceptions import HttpResponseError
from azure.storage.blob import ContainerClient
from prefect.flows import Flow
from prefect_azure import AzureBlobStorageContainer

from prefect_aci.core.errors import UserError
from prefect_aci.core.names import FLOW_ENTRYPOINT, FLOW_FOLDER

FLOWS_DIR = Path(__file__).resolve().parent


def upload_flow_code(
    container: ContainerClient,
    flows_dir: Path = FLOWS_DIR,
    *,
    more: dict[str, Path] | None = None,
    wait_for_access: float = 0,
    retry_every: float = 10,
    echo: Callable[[str], None] = print,
) -> list[str]:
    """Upload the demo's *.py files under FLOW_FOLDER/, and ``more`` (blob name -> file); return
    the blob names.

    ``wait_for_access``: seconds to keep retrying a 403 AuthorizationPermissionMismatch, which is
    what Storage answers while a new role assignment has not reached it yet (minutes, at times).
    """
    source = flows_dir / FLOW_FOLDER
    files = sorted(source.glob("*.py"))
    if not files:
        raise UserError(f"no flow code in {source}; is this a full checkout?")
    deadline = time.monotonic() + wait_for_access
    uploaded = []
    blobs = {f"{FLOW_FOLDER}/{path.name}": path for path in files} | (more or {})
    for name, path in blobs.items():
        while True:
            try:
                container.upload_blob(name, path.read_bytes(), overwrite=True)
                break
            except HttpResponseError as exc:
                if exc.status_code != 403 or exc.error_code != "AuthorizationPermissionMismatch":
                    raise UserError(
                        f"cannot upload {name} to {container.url} (HTTP {exc.status_code} "
                        f"{exc.error_code or ''}); check the storage account and your access"
                    ) from None
                if time.monotonic() > deadline:
                    raise UserError(
                        f"{container.url} still refuses the upload (403): your identity needs "
                        "Storage Blob Data Contributor on the container; `make deploy-all` "
                        "grants it, rerun it in a few minutes if it was just granted"
                    ) from None
                echo("  waiting for the new role assignment to reach Storage (can take minutes)")
                time.sleep(retry_every)
        uploaded.append(name)
    return uploaded


def deploy_demo(storage_block: str, work_pool: str, name: str) -> UUID:
    """Deploy the demo flow from the storage block's container to ``work_pool``.

    Flow.from_source reads the code back from storage, so this also proves the upload. No image=
    here: Flow.deploy re-parses it and turns repo@sha256:... into repo:sha256:...; the pool's
    default image is the digest-pinned reference.
    """
    storage = AzureBlobStorageContainer.load(storage_block)
    flow = Flow.from_source(source=storage, entrypoint=FLOW_ENTRYPOINT)
    return flow.deploy(
        name=name,
        work_pool_name=work_pool,
        build=False,
        push=False,
        print_next_steps=False,
    )
