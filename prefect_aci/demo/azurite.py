"""Azurite (Microsoft's Blob storage emulator, from the npm registry), installed into build/
with `npm ci` from the committed lock in ``azurite-npm/``."""

import hashlib
import json
import shutil
import subprocess
from pathlib import Path

from prefect_aci.core.errors import UserError, last_line

# package.json names Azurite's exact version; package-lock.json pins every package under it with
# its sha512 integrity hash. Refresh both with `npm install --package-lock-only
# --omit-lockfile-registry-resolved=false` in that folder after changing the version.
NPM_PROJECT = Path(__file__).with_name("azurite-npm")
NPM_FILES = ("package.json", "package-lock.json")


def azurite_version(project: Path = NPM_PROJECT) -> str:
    return json.loads((project / "package.json").read_text())["dependencies"]["azurite"]


AZURITE_VERSION = azurite_version()
# Written after a successful `npm ci`: the lock the tree under node_modules was installed from.
INSTALLED_MARKER = Path("node_modules") / ".prefect-aci-lock.sha256"
# Azurite's documented, public development account: not a secret, the same on every machine. A
# demo stack keeps the name and gives the account a random key of its own (accounts_env).
ACCOUNT = "devstoreaccount1"
ACCOUNT_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)


def _lock_digest(project: Path) -> str:
    return hashlib.sha256(b"".join((project / name).read_bytes() for name in NPM_FILES)).hexdigest()


def _npm_reason(output: str) -> str:
    """npm's first error line (its last one only says where the debug log is)."""
    for line in output.splitlines():
        text = line.removeprefix("npm error").strip()
        skip = not text or text.startswith("code ") or "complete log of this run" in text
        if line.startswith("npm error") and not skip:
            return text[:200]
    return last_line(output)


def install(prefix: Path, project: Path = NPM_PROJECT) -> Path:
    """Azurite under ``prefix``, exactly as ``project``'s lock says; reused while it was installed
    from the same lock. `npm ci` installs each package at its locked version, checks it against
    the lock's integrity hash and refuses a lock that disagrees with package.json; install
    scripts do not run (Azurite is plain JavaScript and needs none)."""
    binary = prefix / "node_modules" / ".bin" / "azurite-blob"
    marker = prefix / INSTALLED_MARKER
    digest = _lock_digest(project)
    if binary.exists() and marker.is_file() and marker.read_text().strip() == digest:
        return binary
    npm = shutil.which("npm")
    if npm is None:
        raise UserError(
            "npm is not installed; install Node.js 18+ with npm (apt-get install "
            "nodejs npm) to run Azurite"
        )
    prefix.mkdir(parents=True, exist_ok=True)
    for name in NPM_FILES:
        shutil.copyfile(project / name, prefix / name)
    done = subprocess.run(
        [
            npm,
            "ci",
            "--prefix",
            str(prefix),
            "--ignore-scripts",
            "--no-audit",
            "--no-fund",
            "--loglevel=error",
        ],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0 or not binary.exists():
        raise UserError(
            f"npm ci could not install azurite@{azurite_version(project)} from "
            f"{project / 'package-lock.json'}: {_npm_reason(done.stderr + done.stdout)}"
        )
    marker.write_text(digest + "\n")
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
