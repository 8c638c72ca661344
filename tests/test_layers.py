"""The import contracts in pyproject.toml hold on the tree, and they would catch an import that
goes up a floor: the same contracts, run on a copy with one bad import added."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from prefect_aci.core.paths import PROJECT_ROOT

PACKAGES = ("prefect_aci", "image_builder", "arm", "blocks", "flows")
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def lint_imports(root: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(LINT_IMPORTS), "--config", str(root / "pyproject.toml"), "--no-cache"],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PYTHONPATH": f"{root}:{root / 'runtime'}", "PATH": "/usr/bin:/bin"},
    )


@pytest.fixture
def copy(tmp_path) -> Path:
    for package in PACKAGES:
        shutil.copytree(
            PROJECT_ROOT / package,
            tmp_path / package,
            ignore=shutil.ignore_patterns("schemas", "__pycache__", "*.json"),
        )
    shutil.copytree(
        PROJECT_ROOT / "runtime",
        tmp_path / "runtime",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    shutil.copy(PROJECT_ROOT / "pyproject.toml", tmp_path)
    return tmp_path


def test_the_tree_keeps_every_contract():
    result = lint_imports(PROJECT_ROOT)
    assert result.returncode == 0, result.stdout[-2000:]
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "bad_import", "broken"),
    [
        (
            "image_builder/api.py",
            "from prefect_aci.cli import image",
            "image_builder is not allowed",
        ),
        ("prefect_aci/core/names.py", "from arm import deploy", "prefect_aci.core is not allowed"),
        ("arm/deploy.py", "from image_builder import push", "arm is not allowed to import"),
        ("blocks/register.py", "import typer", "blocks is not allowed to import typer"),
        ("prefect_aci/local_aci/app.py", "from blocks import register", "local_aci is not allowed"),
        ("flows/key_vault_demo/flow.py", "from prefect_aci.core import names", "flows.key_vault"),
        (
            "runtime/prefect_aci_runtime/warm.py",
            "from prefect_aci.core import names",
            "prefect_aci_runtime is not allowed",
        ),
    ],
)
def test_an_import_against_the_floors_breaks_a_contract(copy, module, bad_import, broken):
    path = copy / module
    path.write_text(path.read_text() + f"\n{bad_import}  # noqa\n")
    result = lint_imports(copy)
    assert result.returncode != 0
    assert broken in result.stdout
