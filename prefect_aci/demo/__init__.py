"""`make demo`: the same image, ARM template, registration, flow and worker as on Azure, on one
machine with no Azure account.

The real `azure-container-instance` worker runs the demo flow in container groups of our image,
created through local ACI (`prefect_aci.local_aci`: stand-ins for Resource Manager, Container
Instances, managed identity and Key Vault over Azure's own protocols); Debian's docker-registry
stands in for ACR, Azurite for Blob storage, and a Prefect server from our own image for Prefect
Cloud. `stack` starts and stops it and runs `prefect-aci deploy-all` on it as on Azure, `flow_run`
runs the demo deployment once, `bench` times flow runs through it.
"""

from pathlib import Path

from rich.console import Console

from image_builder.api import BuildOptions, build
from prefect_aci.core.records import ImageRecord, read_record


def images(
    record: Path, server_record: Path, build_now: bool, console: Console
) -> tuple[ImageRecord, ImageRecord]:
    """The image and its server variant (with the UI): built now (from cache when nothing
    changed), or read from their records."""
    if build_now:
        build(BuildOptions(offline_fallback=True), record, console)
        build(BuildOptions(offline_fallback=True, server=True), server_record, console)
    return read_record(record), read_record(server_record)
