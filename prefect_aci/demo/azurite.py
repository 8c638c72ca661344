"""Azurite (Microsoft's Blob storage emulator, from the npm registry), installed into build/."""

import shutil
import subprocess
from pathlib import Path

from prefect_aci.core.errors import UserError, last_line

AZURITE_VERSION = "3.37.0"
# Azurite's documented, public development account: not a secret, the same on every machine. A
# demo stack keeps the name and gives the account a random key of its own (accounts_env).
ACCOUNT = "devstoreaccount1"
ACCOUNT_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)


def install(prefix: Path) -> Path:
    binary = prefix / "node_modules" / ".bin" / "azurite-blob"
    if binary.exists():
        return binary
    npm = shutil.which("npm")
    if npm is None:
        raise UserError(
            "npm is not installed; install Node.js 18+ with npm (apt-get install "
            "nodejs npm) to run Azurite"
        )
    prefix.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        [
            npm,
            "install",
            "--prefix",
            str(prefix),
            "--no-audit",
            "--no-fund",
            "--silent",
            f"azurite@{AZURITE_VERSION}",
        ],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0 or not binary.exists():
        raise UserError(
            f"npm could not install azurite@{AZURITE_VERSION}: {last_line(done.stderr)}"
        )
    return binary


def command(
    binary: Path,
    port: int,
    location: Path,
    tls: tuple[Path, Path] | None = None,
    host: str = "127.0.0.1",
) -> list[str]:
    """Azurite's command line; ``tls`` = (certificate, key) serves HTTPS and accepts Azure AD
    bearer tokens (``--oauth basic``: claims checked, signatures not), as Blob storage does."""
    location.mkdir(parents=True, exist_ok=True)
    secure = ["--cert", str(tls[0]), "--key", str(tls[1]), "--oauth", "basic"] if tls else []
    return [
        str(binary),
        "--blobHost",
        host,
        "--blobPort",
        str(port),
        "--location",
        str(location),
        "--skipApiVersionCheck",
        "--loose",
        "--silent",
        *secure,
    ]


def accounts_env(key: str) -> dict[str, str]:
    """Azurite's environment for one account, ACCOUNT, with ``key`` (base64) instead of the
    published development key: AZURITE_ACCOUNTS replaces Azurite's default account."""
    return {"AZURITE_ACCOUNTS": f"{ACCOUNT}:{key}"}
