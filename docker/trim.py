"""The image's trims, each one step of docker/Dockerfile's build stage: `python trim.py NAME`.

Each removes what neither a worker start nor a flow run (blob pull step, Key Vault) loads, as
measured by tracing both in the image (docs/performance.md). `prefect-aci image build --keep NAME`
(the KEEP build argument, `all` for every one) leaves a trim out. What the server variant needs
back (the UI, bytecode) is set aside in ASIDE, which the Dockerfile's `server` stage restores.
Runs with the venv's own Python; standard library only.
"""

import lzma
import os
import re
import shutil
import subprocess
import sys
import sysconfig
from collections.abc import Iterable
from pathlib import Path

VENV = Path(sys.prefix)
SITE = Path(sysconfig.get_paths()["purelib"])
ASIDE = Path("/opt/trimmed/server")
HERE = Path(__file__).resolve().parent
TRIMS = ("azure-api-versions", "ui", "pip", "bytecode", "symbols", "uv")
# uv for the runtime stage, which copies this tree to /usr/local: the binary, or (trim uv) a small
# launcher and the binary xz-compressed.
UV_BINARY = Path("/opt/build-tools/bin/uv")
UV_TREE = Path("/opt/uv-install")


def _report(name: str, paths: list[Path]) -> None:
    print(f"trim {name}: {len(paths)} paths, {_size(paths) / 1e6:.1f} MB")


def _size(paths: Iterable[Path]) -> int:
    total = 0
    for path in paths:
        if path.is_dir() and not path.is_symlink():
            total += sum(f.lstat().st_size for f in path.rglob("*") if f.is_file())
        elif path.exists():
            total += path.lstat().st_size
    return total


def _files(paths: Iterable[Path]) -> set[str]:
    """Every file under ``paths``, relative to site-packages, as RECORD files spell them."""
    found = set()
    for path in paths:
        members = path.rglob("*") if path.is_dir() else [path]
        for member in members:
            if member.is_file():
                found.add(os.path.relpath(member, SITE))
    return found


def _forget(removed: set[str]) -> None:
    """Drop removed files from their distributions' RECORD, so the metadata tells the truth."""
    for record in SITE.glob("*.dist-info/RECORD"):
        lines = record.read_text().splitlines(keepends=True)
        kept = [line for line in lines if os.path.normpath(line.split(",", 1)[0]) not in removed]
        if len(kept) != len(lines):
            record.write_text("".join(kept))


def _set_aside(paths: Iterable[Path]) -> None:
    """Move ``paths`` under ASIDE (same place relative to the venv) for the server stage."""
    for path in paths:
        target = ASIDE / path.relative_to(VENV)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(path, target)


def _delete(paths: Iterable[Path]) -> None:
    for path in paths:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()


def azure_api_versions() -> None:
    """azure-mgmt-* multi-API packages (azure-mgmt-resource: 20 API versions of `resources`
    alone) keep the versions of their latest profile, which is what their clients use unless
    told otherwise (prefect-azure's worker never is): those its models.py imports, its client's
    DEFAULT_API_VERSION and the versions named in its LATEST_PROFILE."""
    doomed = []
    for models in SITE.glob("azure/mgmt/**/models.py"):
        package = models.parent
        versions = sorted(p for p in package.glob("v[0-9]*_*") if p.is_dir())
        if not versions:
            continue
        keep = set(re.findall(r"from \.(v\d{4}_\w+)\.models import", models.read_text()))
        for client in package.glob("_*_client.py"):
            text = client.read_text()
            profile = re.search(r"LATEST_PROFILE = ProfileDefinition\((.*?)\n    \)", text, re.S)
            named = re.findall(r"DEFAULT_API_VERSION = '([^']+)'", text)
            if profile:
                named += re.findall(r"'(\d{4}-\d{2}-\d{2}(?:-preview)?)'", profile.group(1))
            keep |= {"v" + version.replace("-", "_") for version in named}
        if not keep:
            raise SystemExit(f"trim azure-api-versions: no latest profile found in {package}")
        doomed += [v for v in versions if v.name not in keep]
    _report("azure-api-versions", doomed)
    _forget(_files(doomed))
    _delete(doomed)


def ui() -> None:
    """The Prefect UI's static files: only `prefect server start` serves them (without them it
    serves the API alone). Set aside for the server variant."""
    bundles = [p for p in (SITE / "prefect/server/ui", SITE / "prefect/server/ui-v2") if p.is_dir()]
    for record in SITE.glob("prefect-*.dist-info/RECORD"):
        # The server stage restores the RECORD that lists the UI along with the UI.
        aside = ASIDE / record.relative_to(VENV)
        aside.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(record, aside)
    _report("ui", bundles)
    _forget(_files(bundles))
    _set_aside(bundles)


def pip() -> None:
    """pip: nothing in the image requires it; entrypoint.sh installs EXTRA_PIP_PACKAGES with uv."""
    doomed = [
        SITE / "pip",
        *SITE.glob("pip-*.dist-info"),
        *VENV.glob("bin/pip"),
        *VENV.glob("bin/pip3*"),
    ]
    doomed = [p for p in doomed if p.exists()]
    _report("pip", doomed)
    _delete(doomed)


def _module_of(pyc: Path) -> str:
    folder = pyc.parent.parent.relative_to(SITE)
    name = pyc.name.split(".", 1)[0]
    parts = [*folder.parts] if name == "__init__" else [*folder.parts, name]
    return ".".join(parts)


def bytecode() -> None:
    """Compiled bytecode (.pyc) of the modules that a worker start and a flow run never import
    (bytecode-keep.txt, from the trace): about 3/4 of it. Python compiles such a module in memory
    when something does import it. Set aside for the server variant, whose start needs it."""
    keep = {
        line.strip()
        for line in (HERE / "bytecode-keep.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    doomed = [pyc for pyc in SITE.rglob("__pycache__/*.pyc") if _module_of(pyc) not in keep]
    _report("bytecode", doomed)
    _set_aside(doomed)


def symbols() -> None:
    """Debug symbols in compiled extensions (`strip --strip-unneeded`, as Debian packages ship
    them): cryptography's and asyncpg's alone carry 12 MB. Code and exported symbols stay."""
    libraries = sorted({*SITE.rglob("*.so"), *SITE.rglob("*.so.*")})
    before = _size(libraries)
    subprocess.run(["strip", "--strip-unneeded", *map(str, libraries)], check=True)
    print(
        f"trim symbols: {len(libraries)} extensions, {before / 1e6:.1f} MB -> "
        f"{_size(libraries) / 1e6:.1f} MB"
    )


def uv() -> None:
    """uv, xz-compressed (17 MB of the pulled image as gzip, 12 MB as xz): only starts with
    EXTRA_PIP_PACKAGES and child builds run it, and uv.sh unpacks it on first use."""
    (UV_TREE / "lib/prefect-aci").mkdir(parents=True, exist_ok=True)
    (UV_TREE / "bin").mkdir(parents=True, exist_ok=True)
    packed = UV_TREE / "lib/prefect-aci/uv.xz"
    with UV_BINARY.open("rb") as source, lzma.open(packed, "wb", preset=9) as target:
        shutil.copyfileobj(source, target, 1 << 20)
    launcher = UV_TREE / "bin/uv"
    shutil.copy(HERE / "uv.sh", launcher)
    launcher.chmod(0o755)
    print(f"trim uv: {_size([UV_BINARY]) / 1e6:.1f} MB -> {_size([packed]) / 1e6:.1f} MB xz")


def _plain_uv() -> None:
    (UV_TREE / "bin").mkdir(parents=True, exist_ok=True)
    shutil.copy2(UV_BINARY, UV_TREE / "bin/uv")


def main(name: str) -> None:
    if name not in TRIMS:
        raise SystemExit(f"unknown trim {name!r}; the trims are: {', '.join(TRIMS)}")
    ASIDE.mkdir(parents=True, exist_ok=True)
    keep = os.environ.get("KEEP", "").replace(",", " ").split()
    if name in keep or "all" in keep:
        print(f"trim {name}: kept (KEEP={' '.join(keep)})")
        if name == "uv":
            _plain_uv()
        return
    globals()[name.replace("-", "_")]()
    # What the image says it had trimmed: read by the tests and `prefect-aci image tags`.
    with (VENV / "prefect-aci-trims").open("a") as applied:
        applied.write(name + "\n")


if __name__ == "__main__":
    main(sys.argv[1])
