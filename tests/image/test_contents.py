"""What a user of the image sees: packages, user, home, labels."""

import json

from image_builder.build import TRIMS
from image_builder.probe import image_versions
from tests.conftest import TEST_REPOSITORY
from tests.containers import run_and_wait

IMPORTS = (
    "import prefect, prefect_azure, adlfs, azure.identity, azure.keyvault.secrets, "
    "azure.storage.blob, prefect_azure.workers.container_instance, "
    "prefect_azure.blob_storage; print('imported')"
)


def test_packages_import(docker_client, image):
    done = run_and_wait(docker_client, image, ["python3", "-c", IMPORTS])
    assert done.exit_code == 0, done.stderr
    assert done.stdout.strip() == "imported"


def test_prefect_version_runs_with_default_command(docker_client, image):
    done = run_and_wait(docker_client, image)
    assert done.exit_code == 0, done.stderr
    assert "prefect-azure:" in done.stdout


def test_runs_as_non_root_with_writable_home(docker_client, image):
    probe = (
        "import os, json, pathlib; home = pathlib.Path(os.environ['PREFECT_HOME']); "
        "home.mkdir(parents=True, exist_ok=True); (home / 'probe').write_text('x'); "
        "pathlib.Path('probe').write_text('x'); "
        "print(json.dumps({'uid': os.getuid(), 'home': os.environ['HOME'], 'ph': str(home)}))"
    )
    done = run_and_wait(docker_client, image, ["python3", "-c", probe])
    assert done.exit_code == 0, done.stderr
    seen = json.loads(done.stdout)
    assert seen["uid"] != 0
    assert seen["home"] == "/home/prefect"
    assert seen["ph"].startswith("/home/prefect/")


def test_labels_match_versions_inside(docker_client, built_image):
    labels = docker_client.images.get(built_image.image_id).labels
    inside = image_versions(docker_client, built_image.image_id)
    assert labels["io.prefect-aci.prefect-version"] == inside.prefect
    assert labels["io.prefect-aci.prefect-azure-version"] == inside.prefect_azure
    assert labels["io.prefect-aci.python-version"] == inside.python
    assert labels["org.opencontainers.image.version"] == (
        f"{inside.prefect}-python{inside.python_minor}"
    )
    for key in ("source", "revision", "created"):
        assert labels[f"org.opencontainers.image.{key}"] not in ("", "unknown")


def test_image_record_holds_versions_from_the_image(docker_client, built_image):
    inside = image_versions(docker_client, built_image.image_id)
    assert built_image.versions == inside.as_dict()
    assert (
        f"{TEST_REPOSITORY}:{inside.prefect}-python{inside.python_minor}" in built_image.local_tags
    )


def test_final_image_has_no_compiler_build_tools_or_package_caches(docker_client, image):
    probe = (
        "import shutil, pathlib, json; "
        "print(json.dumps({'gcc': shutil.which('gcc'), 'cc': shutil.which('cc'), "
        "'strip': shutil.which('strip'), 'pip': shutil.which('pip'), "
        "'build_tools': pathlib.Path('/opt/build-tools').exists(), "
        "'trimmed': pathlib.Path('/opt/trimmed').exists(), "
        "'caches': [str(p) for p in map(pathlib.Path, ['/root/.cache', '/home/prefect/.cache']) "
        "if p.exists()], "
        "'apt_lists': any(pathlib.Path('/var/lib/apt/lists').glob('*_Packages'))}))"
    )
    done = run_and_wait(docker_client, image, ["python3", "-c", probe], user="root")
    assert done.exit_code == 0, done.stderr
    assert json.loads(done.stdout) == {
        "gcc": None,
        "cc": None,
        "strip": None,
        "pip": None,
        "build_tools": False,
        "trimmed": False,
        "caches": [],
        "apt_lists": False,
    }


def test_every_trim_was_applied_and_requirements_still_hold(docker_client, image):
    trims = run_and_wait(docker_client, image, ["cat", "/opt/prefect/venv/prefect-aci-trims"])
    assert trims.stdout.split() == list(TRIMS)
    check = run_and_wait(
        docker_client, image, ["uv", "pip", "check", "--python", "/opt/prefect/venv/bin/python"]
    )
    assert check.exit_code == 0, check.stdout + check.stderr
    assert "All installed packages are compatible" in check.stdout + check.stderr


def test_trimmed_image_keeps_one_resources_api_version_and_no_ui(docker_client, image):
    probe = (
        "import json, pathlib, prefect, azure.mgmt.resource.resources as r; "
        "from azure.mgmt.resource.resources import ResourceManagementClient as C; "
        "print(json.dumps({'versions': sorted(p.name for p in pathlib.Path(r.__path__[0])"
        ".glob('v20*')), 'default': C.DEFAULT_API_VERSION, "
        "'ui': prefect.__ui_static_path__.exists()}))"
    )
    done = run_and_wait(docker_client, image, ["python3", "-c", probe])
    assert done.exit_code == 0, done.stderr
    seen = json.loads(done.stdout)
    assert seen["versions"] == ["v" + seen["default"].replace("-", "_")]
    assert seen["ui"] is False
