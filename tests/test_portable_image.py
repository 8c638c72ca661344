"""`make setup image` works for a non-root user on a machine without the packages only the tests,
the demo and the offline base need (docker-registry, tini, debootstrap, docker-compose, chromium)
and without a package manager to fetch them: as on macOS, or a CI runner with Docker.

The test makes that machine out of this one: a user in the `docker` group, a copy of the checkout
it owns, and a mount namespace in which those programs, apt-get and dpkg are empty files. It needs
root for that (CI runs the suite as root)."""

import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from prefect_aci.core.paths import PROJECT_ROOT

pytestmark = pytest.mark.slow

USER = "prefect-aci-nonroot"
HIDDEN = (
    "docker-registry",
    "tini",
    "tini-static",
    "debootstrap",
    "docker-compose",
    "chromium",
    "apt-get",
    "dpkg",
    "dpkg-query",
)


def _user() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(USER)
    except KeyError:
        subprocess.run(["useradd", "--create-home", "--groups", "docker", USER], check=True)
        return pwd.getpwnam(USER)


def _copy_of_checkout(owner: pwd.struct_passwd) -> Path:
    """The files git knows (tracked, and new ones it does not ignore), owned by the user; in /tmp
    because pytest's own tmp_path is readable by root only."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    copy = Path(tempfile.mkdtemp(prefix="prefect-aci-nonroot-"))
    for name in filter(None, (n.decode() for n in listed)):
        source = PROJECT_ROOT / name
        if source.is_file():
            (copy / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, copy / name)
    subprocess.run(["chown", "-R", f"{owner.pw_uid}:{owner.pw_gid}", str(copy)], check=True)
    return copy


def test_make_image_as_a_non_root_user_without_the_test_packages(built_image):
    if os.geteuid() != 0:
        pytest.fail("this test creates a user and a mount namespace: run the suite as root")
    user = _user()
    copy = _copy_of_checkout(user)
    hidden = [path for path in map(shutil.which, HIDDEN) if path]
    hide = "; ".join(f"mount --bind /dev/null {path}" for path in hidden)
    env = {
        "HOME": user.pw_dir,
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "PYTHON": "/usr/bin/python3",
        **{k: v for k, v in os.environ.items() if k in ("PIP_CERT", "SSL_CERT_FILE", "LANG")},
    }
    become_user = [
        "setpriv",
        f"--reuid={user.pw_uid}",
        f"--regid={user.pw_gid}",
        "--init-groups",
        "env",
        "-i",
        *(f"{k}={v}" for k, v in env.items()),
    ]
    script = (
        f"set -e; {hide}; "
        # The packages really are gone for everything that runs below.
        "if docker-registry --version >/dev/null 2>&1; then exit 97; fi; "
        f"exec {' '.join(become_user)} make -C {copy} setup image"
    )
    try:
        done = subprocess.run(
            ["unshare", "--mount", "--propagation", "private", "bash", "-c", script],
            capture_output=True,
            text=True,
            timeout=1500,
        )
        assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
        record = (copy / "build" / "image.json").read_text()
        assert built_image.versions["prefect"] in record
        assert (copy / "build" / "image.json").stat().st_uid == user.pw_uid
    finally:
        shutil.rmtree(copy, ignore_errors=True)
