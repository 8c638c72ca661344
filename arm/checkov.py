"""checkov over the template, with its own ARM checks and ours (arm/checkov_checks, CKV_PACI_*),
offline (--skip-download). checkov lives in a venv of its own (.venv-checkov, `make checkov`):
its pins clash with the development tools."""

import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from prefect_aci.core.errors import UserError, last_line
from prefect_aci.core.paths import PROJECT_ROOT

CHECKOV = PROJECT_ROOT / ".venv-checkov" / "bin" / "checkov"
PROJECT_CHECKS = PROJECT_ROOT / "arm" / "checkov_checks"


@dataclass(frozen=True)
class Finding:
    check_id: str
    resource: str
    text: str  # the check's name, or for a skip the written reason


@dataclass(frozen=True)
class Report:
    passed: list[Finding]
    failed: list[Finding]
    skipped: list[Finding]


def _binary() -> str:
    if CHECKOV.exists():
        return str(CHECKOV)
    found = shutil.which("checkov")
    if found is None:
        raise UserError("checkov is not installed; run `make checkov` (it gets a venv of its own)")
    return found


def run_checkov(template: Path) -> Report:
    done = subprocess.run(
        [
            _binary(),
            "-f",
            str(template),
            "--framework",
            "arm",
            "--skip-download",
            "--output",
            "json",
            "--external-checks-dir",
            str(PROJECT_CHECKS),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    try:
        results = json.loads(done.stdout).get("results", {})
    except ValueError:
        raise UserError(f"checkov did not report on {template}: {last_line(done.stderr)}") from None

    def findings(kind: str, text_of) -> list[Finding]:
        return [
            Finding(check["check_id"], check.get("resource", ""), text_of(check))
            for check in results.get(kind, [])
        ]

    return Report(
        passed=findings("passed_checks", lambda c: c.get("check_name", "")),
        failed=findings("failed_checks", lambda c: c.get("check_name", "")),
        skipped=findings(
            "skipped_checks",
            lambda c: c.get("check_result", {}).get("suppress_comment", ""),
        ),
    )
