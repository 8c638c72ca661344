"""tini as PID 1, signals, reaping, and the entrypoint's EXTRA_PIP_PACKAGES step."""

import time

import pytest

from tests.containers import run_and_wait

ACI_STYLE = {"entrypoint": "/usr/bin/tini"}
ACI_COMMAND = ["-g", "--", "/opt/prefect/entrypoint.sh"]
PID1 = ["sh", "-c", "tr '\\0' ' ' </proc/1/cmdline"]

# Counts zombie processes after orphaning a grandchild that exits quickly: an init that reaps
# leaves none.
ZOMBIE_PROBE = """
import glob, subprocess, time
subprocess.run(["sh", "-c", "sleep 0.2 &"], check=True)
time.sleep(1.5)
zombies = 0
for status in glob.glob("/proc/[0-9]*/status"):
    try:
        zombies += "State:\\tZ" in open(status).read()
    except OSError:
        pass
print(zombies)
"""


def test_pid1_is_tini_with_default_entrypoint(docker_client, image):
    done = run_and_wait(docker_client, image, PID1)
    assert done.exit_code == 0, done.stderr
    assert done.stdout.startswith("/usr/bin/tini -g -- /opt/prefect/entrypoint.sh")


def test_pid1_is_tini_when_entrypoint_replaced_the_aci_way(docker_client, image):
    done = run_and_wait(docker_client, image, [*ACI_COMMAND, *PID1], **ACI_STYLE)
    assert done.exit_code == 0, done.stderr
    assert done.stdout.startswith("/usr/bin/tini -g -- /opt/prefect/entrypoint.sh")


def test_prefect_version_runs_with_aci_style_entrypoint(docker_client, image):
    done = run_and_wait(docker_client, image, [*ACI_COMMAND, "prefect", "version"], **ACI_STYLE)
    assert done.exit_code == 0, done.stderr
    assert "Version:" in done.stdout


def test_docker_stop_ends_container_with_sigterm_not_sigkill(docker_client, image):
    container = docker_client.containers.run(image, ["sleep", "600"], detach=True)
    try:
        time.sleep(1)
        container.stop(timeout=30)
        state = docker_client.api.inspect_container(container.id)["State"]
        # 143 = 128 + SIGTERM, passed on by tini; 137 would mean the engine had to SIGKILL it.
        assert state["ExitCode"] == 143
    finally:
        container.remove(force=True)


def test_orphaned_child_is_reaped(docker_client, image):
    done = run_and_wait(docker_client, image, ["python3", "-c", ZOMBIE_PROBE])
    assert done.exit_code == 0, done.stderr
    assert done.stdout.strip() == "0"


def test_zombie_probe_sees_zombies_without_an_init(docker_client, image):
    # Control for the test above: with python itself as PID 1 the orphan stays a zombie.
    done = run_and_wait(docker_client, image, ["-c", ZOMBIE_PROBE], entrypoint="python3")
    assert done.exit_code == 0, done.stderr
    assert int(done.stdout.strip()) >= 1


@pytest.fixture
def pip_env(host_ca_bundle):
    return {
        "volumes": {str(host_ca_bundle): {"bind": "/etc/prefect-aci/ca.pem", "mode": "ro"}},
        "environment": {"PIP_CERT": "/etc/prefect-aci/ca.pem"},
    }


def test_extra_pip_packages_are_installed_as_non_root(docker_client, image, pip_env):
    pip_env["environment"]["EXTRA_PIP_PACKAGES"] = "tomli-w==1.2.0"
    done = run_and_wait(
        docker_client, image, ["python3", "-c", "import os, tomli_w; print(os.getuid())"], **pip_env
    )
    assert done.exit_code == 0, done.stderr
    assert done.stdout.strip() == "1000"


def test_extra_pip_packages_failure_exits_non_zero_with_clear_message(
    docker_client, image, pip_env
):
    pip_env["environment"]["EXTRA_PIP_PACKAGES"] = "prefect-aci-no-such-package-xq7==0.0.1"
    done = run_and_wait(docker_client, image, ["echo", "COMMAND RAN"], **pip_env)
    assert done.exit_code != 0
    assert "COMMAND RAN" not in done.stdout
    assert "could not install EXTRA_PIP_PACKAGES" in done.stderr


def test_extra_pip_packages_credentials_are_not_printed(docker_client, image):
    requirement = "https://builder:s3cr3t-t0ken@127.0.0.1:9/pkg.tar.gz"
    done = run_and_wait(
        docker_client,
        image,
        ["true"],
        environment={"EXTRA_PIP_PACKAGES": requirement, "PIP_RETRIES": "0"},
    )
    assert done.exit_code != 0
    assert "s3cr3t-t0ken" not in done.stdout + done.stderr
    assert "https://***@127.0.0.1:9/pkg.tar.gz" in done.stderr


def test_extra_pip_packages_are_not_globbed(docker_client, image, pip_env):
    """A requirement that looks like a glob stays as written: a file in the working folder
    whose name it matches is not installed instead."""
    pip_env["environment"]["EXTRA_PIP_PACKAGES"] = "tomli-w==1.2.*"
    script = "touch tomli-w==1.2.x && exec /opt/prefect/entrypoint.sh python3 -c 'import tomli_w'"
    done = run_and_wait(
        docker_client, image, ["-c", script], entrypoint="/bin/sh", working_dir="/tmp", **pip_env
    )
    assert done.exit_code == 0, done.stderr
    assert "tomli-w==1.2.x" not in done.stderr


def test_uv_never_runs_a_file_another_user_put_in_tmp(docker_client, image):
    """Another user made /tmp/prefect-aci-uv-1000 first, with a uv of their own: uv.sh unpacks
    the real one into a private folder instead."""
    plant = (
        "mkdir -p /tmp/prefect-aci-uv-1000 && chmod 777 /tmp/prefect-aci-uv-1000 && "
        "printf '#!/bin/sh\\necho PLANTED\\n' > /tmp/prefect-aci-uv-1000/uv && "
        "chmod 755 /tmp/prefect-aci-uv-1000/uv && "
        "su prefect -s /bin/sh -c 'uv --version'"
    )
    done = run_and_wait(docker_client, image, ["-c", plant], entrypoint="/bin/sh", user="root")
    assert done.exit_code == 0, done.stderr
    assert "PLANTED" not in done.stdout
    assert done.stdout.startswith("uv "), done.stdout
