"""Where the project's files and the records between stages live."""

from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]
BUILD_DIR = PROJECT_ROOT / "build"
# The two hand-offs between stages (prefect_aci.core.records reads and writes them).
IMAGE_RECORD = BUILD_DIR / "image.json"
AZURE_RECORD = BUILD_DIR / "azure.json"
# The image's server variant (with the Prefect UI) that the demo's Prefect server runs.
SERVER_RECORD = BUILD_DIR / "server-image.json"
# The demo stack's state, logs and data (`prefect-aci demo --state-dir` picks another).
DEMO_DIR = BUILD_DIR / "demo"
SCRIPTS_DIR = PROJECT_ROOT / "scripts"
