"""Find the base image: local, pulled, or (offline) made from Debian packages with debootstrap."""

import os
import shutil
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import docker
from docker.errors import APIError, ImageNotFound
from docker.utils import parse_repository_tag
from rich.console import Console
from rich.markup import escape

from image_builder.base_pins import pinned
from prefect_aci.core.errors import UserError, first_line, last_line

SUITE = "bookworm"
# The Pythons the image is built for, and the Debian release whose python3 is that version, from
# which the offline base is made. No Debian release ships 3.12 (bookworm 3.11, trixie 3.13), and
# uv-managed Pythons come from GitHub, not PyPI: offline, 3.12 cannot be made here.
PYTHONS = ("3.11", "3.12", "3.13")
OFFLINE_SUITES = {"3.11": "bookworm", "3.13": "trixie"}


def check_python(version: str) -> str:
    if version not in PYTHONS:
        raise UserError(f"unknown Python version {version!r}; choose one of {', '.join(PYTHONS)}")
    return version


def online_base(python: str) -> str:
    """The production base for a Python: Docker's official slim image on Debian bookworm, pinned
    by digest (docker/base-images.lock)."""
    return pinned(f"python:{python}-slim-bookworm")


def offline_base(python: str | None, bookworm_tag: str) -> tuple[str, str] | None:
    """(tag, Debian suite) of the offline base for ``python`` (None: the default, bookworm's),
    or None when no Debian release has that Python."""
    suite = OFFLINE_SUITES.get(python or "3.11")
    if suite is None:
        return None
    tag = bookworm_tag if suite == SUITE else bookworm_tag.rsplit(":", 1)[0] + f":{suite}"
    return tag, suite


# Debian's archive keyring, as the debian-archive-keyring package installs it. debootstrap is told
# to check every Release signature against it and to fail without it: by default debootstrap only
# warns when the keyring is missing and then installs whatever the mirror serves.
DEBIAN_KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")
# The mirror when none is configured: https where the machine reaches it (what is fetched stays
# private on the way), else http. Either way the packages are only
# trusted through the signed Release file, so plain http is a fallback, not a hole.
HTTPS_MIRROR = "https://deb.debian.org/debian"
HTTP_MIRROR = "http://deb.debian.org/debian"
PROBE_TIMEOUT = 10.0


def https_unreachable(url: str) -> str | None:
    """None when ``url`` answers over verified TLS, with the host's CA trust (which holds a
    TLS-intercepting proxy's CA where one is in the way); else the reason it does not."""
    request = urllib.request.Request(url, method="HEAD")  # noqa: S310 (https only)
    context = ssl.create_default_context()
    try:
        with urllib.request.urlopen(request, timeout=PROBE_TIMEOUT, context=context):  # noqa: S310
            return None
    except (urllib.error.URLError, OSError) as exc:
        return first_line(str(getattr(exc, "reason", None) or exc))


def choose_mirror(
    configured: str | None,
    suite: str,
    console: Console,
    probe: Callable[[str], str | None] = https_unreachable,
) -> str:
    """The Debian mirror debootstrap uses: the configured one, else https://deb.debian.org when
    its Release file answers over verified TLS, else http://deb.debian.org (said on one line)."""
    if configured:
        return configured
    reason = probe(f"{HTTPS_MIRROR}/dists/{suite}/Release")
    if reason is None:
        return HTTPS_MIRROR
    console.print(
        f"[yellow]warning: {HTTPS_MIRROR} does not answer here ({escape(reason)}); "
        f"using {HTTP_MIRROR}. Release signatures are still checked against Debian's keyring. Set "
        "PREFECT_ACI_DEBIAN_MIRROR to an https mirror you reach to avoid this.[/]"
    )
    return HTTP_MIRROR


# python3-venv brings ensurepip, as Docker's official python images have it; ca-certificates
# lets flows reach Azure and the Prefect API over TLS.
PACKAGES = ("python3", "python3-venv", "ca-certificates")
# Removed after debootstrap, and kept out of later apt installs by the dpkg config below: the same
# trimming Docker's official slim Debian images do.
SLIM_PATHS = (
    "usr/share/doc",
    "usr/share/man",
    "usr/share/info",
    "usr/share/locale",
    "usr/share/lintian",
    "usr/share/linda",
    "var/lib/apt/lists",
    "var/cache/apt",
    "var/cache/debconf/*-old",
    "var/log",
)
DPKG_EXCLUDES = """\
# prefect-aci offline base: keep images slim, as Docker's slim Debian images do.
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/lintian/*
"""
IMAGE_CHANGES = [
    "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "ENV LANG=C.UTF-8",
    'CMD ["python3"]',
]


def image_present(client: docker.DockerClient, ref: str) -> bool:
    try:
        client.images.get(ref)
    except ImageNotFound:
        return False
    return True


def try_pull(client: docker.DockerClient, ref: str) -> str | None:
    """Pull ``ref``; return None on success or the engine's reason it could not."""
    repository, tag = parse_repository_tag(ref)
    try:
        client.api.pull(repository, tag=tag or "latest")
    except APIError as exc:
        return first_line(str(exc.explanation or exc))
    return None


def resolve_base(
    client: docker.DockerClient,
    base_image: str,
    offline_image: str,
    offline_fallback: bool,
    mirror: str | None,
    console: Console,
    python: str | None = None,
) -> str:
    """The base image to build from, present locally once this returns. ``python``: the version
    asked for, which the offline fallback must then provide too. ``mirror``: the Debian mirror
    for the offline base, None to choose one (``choose_mirror``)."""
    offline = offline_base(python, offline_image)
    if image_present(client, base_image):
        return base_image
    if offline and base_image == offline[0]:
        return make_offline_base(client, offline[0], mirror, console, suite=offline[1])
    console.print(f"Base image {base_image} is not here; pulling it")
    reason = try_pull(client, base_image)
    if reason is None:
        return base_image
    if offline_fallback and offline is None:
        raise UserError(
            f"cannot pull {base_image} ({reason}), and no offline base has Python {python}: "
            "no Debian release ships it (bookworm has 3.11, trixie 3.13) and uv's Pythons are "
            "downloaded from GitHub, not PyPI; build with --python 3.11 or 3.13 here, or give "
            f"--base an image with Python {python} that this engine holds"
        )
    if offline_fallback and offline is not None:
        tag, suite = offline
        console.print(
            f"[yellow]Cannot pull {base_image} ({reason}); using the offline base {tag} "
            f"(Debian {suite}, Python {python or '3.11'}).[/]"
        )
        return make_offline_base(client, tag, mirror, console, suite=suite)
    hint = (
        f"run `prefect-aci image base --offline` and build with --base {offline[0]}, or "
        if offline
        else ""
    )
    raise UserError(
        f"base image {base_image} is not present and cannot be pulled ({reason}); "
        f"{hint}build with --offline-fallback"
    )


def _ensure_debootstrap(console: Console) -> str:
    found = shutil.which("debootstrap")
    if found:
        return found
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise UserError(
            "debootstrap is not installed; install it (apt-get install debootstrap "
            "debian-archive-keyring) as root and retry"
        )
    console.print("Installing debootstrap and Debian's archive keyring from Debian's packages")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (
        ["apt-get", "update", "-qq"],
        [
            "apt-get",
            "install",
            "-y",
            "-qq",
            "--no-install-recommends",
            "debootstrap",
            "debian-archive-keyring",
        ],
    ):
        subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)
    return shutil.which("debootstrap") or "debootstrap"


def check_keyring(keyring: Path = DEBIAN_KEYRING) -> Path:
    """The keyring Release signatures are checked against; a user error when it is missing."""
    if not keyring.is_file():
        raise UserError(
            f"Debian's archive keyring {keyring} is missing, so debootstrap cannot check what "
            "it downloads; install it (apt-get install debian-archive-keyring) and retry"
        )
    return keyring


def debootstrap_command(
    debootstrap: str, suite: str, rootfs: Path, mirror: str, keyring: Path
) -> list[str]:
    """debootstrap checking every Release signature against ``keyring``, failing otherwise."""
    return [
        debootstrap,
        "--variant=minbase",
        "--force-check-gpg",
        f"--keyring={keyring}",
        f"--include={','.join(PACKAGES)}",
        suite,
        str(rootfs),
        mirror,
    ]


def run_debootstrap(command: list[str], mirror: str, console: Console) -> None:
    """Run debootstrap; its warnings (``W:`` lines) are shown, a failure is one user error."""
    done = subprocess.run(command, capture_output=True, text=True)
    output = done.stdout + done.stderr
    for line in output.splitlines():
        if line.startswith("W: "):
            console.print(f"[yellow]warning: debootstrap: {escape(line[3:])}[/]", highlight=False)
    if done.returncode != 0:
        # debootstrap's reason is its E: line; what follows it is advice (where to find keys).
        errors = [line for line in output.splitlines() if line.startswith("E: ")]
        reason = errors[0] if errors else last_line(output)
        raise UserError(
            f"debootstrap failed: {reason}; check that {mirror} is reachable or pass --mirror"
        )


def _slim(rootfs: Path) -> None:
    for pattern in SLIM_PATHS:
        for path in rootfs.glob(pattern):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
                path.mkdir()
            else:
                path.unlink()
    (rootfs / "etc/dpkg/dpkg.cfg.d/prefect-aci-slim").write_text(DPKG_EXCLUDES)
    # `python` as in Docker's python images; Debian only ships python3.
    python = rootfs / "usr/local/bin/python"
    if not python.exists():
        python.symlink_to("/usr/bin/python3")


def make_offline_base(
    client: docker.DockerClient,
    tag: str,
    mirror: str | None,
    console: Console,
    rebuild: bool = False,
    suite: str = SUITE,
) -> str:
    """Build (or reuse) a Debian image (bookworm, or trixie for Python 3.13) with Debian's
    Python, from packages only, every one checked against Debian's signed Release file.
    ``mirror``: None to choose one (``choose_mirror``)."""
    if not rebuild and image_present(client, tag):
        console.print(f"Reusing offline base {tag}")
        return tag
    if os.geteuid() != 0:
        raise UserError(
            "the offline base needs root (debootstrap creates device nodes and "
            "owners); run as root or use an online base with --base"
        )
    debootstrap = _ensure_debootstrap(console)
    keyring = check_keyring()
    mirror = choose_mirror(mirror, suite, console)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="prefect-aci-base-") as tmp:
        rootfs = Path(tmp) / "rootfs"
        console.print(
            f"Making offline base {tag} with debootstrap ({suite}, {mirror}); about a minute"
        )
        run_debootstrap(
            debootstrap_command(debootstrap, suite, rootfs, mirror, keyring), mirror, console
        )
        _slim(rootfs)
        archive = Path(tmp) / "rootfs.tar"
        subprocess.run(
            [
                "tar",
                "--numeric-owner",
                "--exclude=./dev/*",
                "--exclude=./proc/*",
                "--exclude=./sys/*",
                "-C",
                str(rootfs),
                "-cf",
                str(archive),
                ".",
            ],
            check=True,
        )
        repository, _, version = tag.rpartition(":")
        client.api.import_image_from_file(
            str(archive), repository=repository, tag=version, changes=IMAGE_CHANGES
        )
    console.print(f"[bold green]Made offline base[/] {tag} in {time.monotonic() - started:.0f}s")
    return tag
