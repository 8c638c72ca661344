"""The CA bundle used to build must be in no layer of the final image: read every layer."""

import tarfile

import pytest

from tests.conftest import CA_MARKER


@pytest.fixture(scope="module")
def layer_files(docker_client, image, tmp_path_factory) -> dict[str, bytes]:
    """Every regular file of every layer of the saved image, keyed ``layer:path``."""
    archive = tmp_path_factory.mktemp("save") / "image.tar"
    with archive.open("wb") as out:
        for chunk in docker_client.images.get(image).save(named=False):
            out.write(chunk)
    files = {}
    with tarfile.open(archive) as saved:
        for member in saved.getmembers():
            if not member.name.endswith("layer.tar"):
                continue
            with tarfile.open(fileobj=saved.extractfile(member)) as layer:
                for entry in layer.getmembers():
                    if entry.isfile():
                        files[f"{member.name}:{entry.name}"] = layer.extractfile(entry).read()
    return files


def test_layer_scan_reads_file_contents(layer_files):
    # Control: the entrypoint script is in a layer, so a bundle would be found the same way.
    assert any(
        b"EXTRA_PIP_PACKAGES" in data
        for name, data in layer_files.items()
        if name.endswith("opt/prefect/entrypoint.sh")
    )


def test_no_layer_holds_the_build_ca_bundle(layer_files):
    marker = CA_MARKER.encode()
    leaked = [
        name
        for name, data in layer_files.items()
        if marker in data or name.endswith("build-ca.pem")
    ]
    assert leaked == []


def test_history_does_not_mention_the_build_ca_bundle(docker_client, image):
    history = docker_client.api.history(image)
    assert not [step for step in history if "build-ca.pem" in step.get("CreatedBy", "")]
