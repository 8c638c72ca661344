"""`prefect-aci register`: the Prefect side, from build/image.json, build/azure.json, settings."""

from pathlib import Path
from typing import Annotated

import typer

from blocks.inputs import RegistrationSettings
from blocks.register import register
from prefect_aci.core.paths import AZURE_RECORD, IMAGE_RECORD
from prefect_aci.core.records import AzureRecord, PublishedImage, read_record
from prefect_aci.core.settings import load


def register_command(
    dry_run: Annotated[bool, typer.Option(help="Say what would be created; write nothing.")] = (
        False
    ),
    image_record: Annotated[Path, typer.Option(help="Pushed image record.")] = IMAGE_RECORD,
    azure_record: Annotated[Path, typer.Option(help="The ARM deployment's outputs.")] = (
        AZURE_RECORD
    ),
) -> None:
    """Register the Prefect side: ACI credentials block, ACI work pool with its base job template,
    flow-code storage block, the automation that marks the pool's flow runs Crashed when their
    heartbeats stop, and the key_vault_url Variable. Idempotent.

    Settings: PREFECT_API_URL (https, or loopback, unless PREFECT_ACI_ALLOW_HTTP_API_URL=true) and
    PREFECT_API_KEY (Prefect Cloud) or PREFECT_API_AUTH_STRING (a self-hosted server);
    PREFECT_ACI_POOL_ENV (a JSON object of more plain env for flow runs, no secret-like names);
    PREFECT_ACI_WORK_POOL_NAME
    overrides the recorded pool name; PREFECT_ACI_WORKER_TENANT_ID, PREFECT_ACI_WORKER_CLIENT_ID
    and PREFECT_ACI_WORKER_CLIENT_SECRET, all three, put the worker's own service principal in the
    credentials block instead of the worker's managed identity (never the one AZURE_* signs in);
    PREFECT_ACI_HEARTBEAT_SECONDS (60) and PREFECT_ACI_HEARTBEAT_WINDOW_SECONDS (three heartbeats
    plus 60 s) set how often runs send heartbeats and how long the automation waits for one.
    """
    settings = load(RegistrationSettings)
    image = read_record(image_record, PublishedImage)
    azure = read_record(azure_record, AzureRecord)
    register(azure, image, settings, dry_run=dry_run)
