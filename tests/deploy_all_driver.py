"""`python -m deploy_all run`, with one change: Azure Resource Manager's address.

azure-mgmt-resource sends https://management.azure.com/... through azure-core's own requests
transport, redirected to the local ARM stand-in (tests/redirect.py); everything else is the
command as users run it: settings from the environment, DefaultAzureCredential, the Docker engine,
the registry, Blob storage and the Prefect API over their real protocols.

Usage: python -m tests.deploy_all_driver ARM_ADDRESS IMAGE_RECORD AZURE_RECORD
"""

import sys
from pathlib import Path

from arm.cli import TEMPLATE
from deploy_all.cli import execute
from image_builder.cli_support import command_group, run_cli
from tests.arm_stand_in import MANAGEMENT
from tests.redirect import RedirectTransport

app = command_group("deploy-all against a local ARM stand-in")


@app.command()
def run(arm_address: str, image_record: Path, azure_record: Path) -> None:
    execute(image_record, azure_record, TEMPLATE, RedirectTransport(MANAGEMENT, arm_address))


if __name__ == "__main__":
    sys.argv.insert(1, "run")
    run_cli(app)
