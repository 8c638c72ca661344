"""The hand-off records: one meaning per field, a pushed image asked for by type, older records
read as they meant."""

import json

import pytest

from prefect_aci.core.errors import UserError
from prefect_aci.core.records import ImageRecord, PublishedImage, read_record, write_record

DIGEST = "sha256:" + "ab" * 32
LOCAL = {
    "image_id": "sha256:" + "1" * 64,
    "repository": "prefect-aci",
    "local_tags": ["prefect-aci:3.9.1-python3.12", "prefect-aci:latest"],
    "base_image": "python:3.12-slim-bookworm",
    "versions": {"python": "3.12.8", "prefect": "3.9.1"},
}


def test_an_unpushed_record_is_refused_where_a_pushed_image_is_needed(tmp_path):
    path = tmp_path / "image.json"
    write_record(path, ImageRecord.model_validate(LOCAL))
    assert read_record(path).published is None
    with pytest.raises(UserError, match=r"not pushed; push it first \(make push REGISTRY="):
        read_record(path, PublishedImage)


def test_a_pushed_record_keeps_the_local_name_apart_from_the_registry_path(tmp_path):
    path = tmp_path / "image.json"
    pushed = {
        **LOCAL,
        "published": {
            "registry": "docker.io",
            "repository": "someone/prefect-aci",
            "tags": ["3.9.1-python3.12"],
            "digest": DIGEST,
        },
    }
    path.write_text(json.dumps(pushed))
    image = read_record(path, PublishedImage)
    assert image.repository == "prefect-aci"
    assert image.reference == f"docker.io/someone/prefect-aci@{DIGEST}"


def test_a_record_written_by_an_older_version_is_read_as_it_meant(tmp_path):
    path = tmp_path / "image.json"
    older = {
        **LOCAL,
        # 0.1 overwrote the local name with the registry path and kept the push in flat fields.
        "repository": "someone/prefect-aci",
        "registry": "docker.io",
        "tags": ["3.9.1-python3.12"],
        "digest": DIGEST,
        "reference": f"docker.io/someone/prefect-aci@{DIGEST}",
    }
    path.write_text(json.dumps(older))
    image = read_record(path, PublishedImage)
    assert image.repository == "prefect-aci"
    assert image.published.repository == "someone/prefect-aci"
    assert image.reference == older["reference"]


def test_an_older_record_that_was_never_pushed_is_read_as_local(tmp_path):
    path = tmp_path / "image.json"
    path.write_text(json.dumps({**LOCAL, "registry": None, "digest": None, "reference": None}))
    assert read_record(path).published is None


def test_a_malformed_digest_is_one_line_naming_the_field(tmp_path):
    path = tmp_path / "image.json"
    bad = {**LOCAL, "published": {"registry": "r", "repository": "x", "tags": [], "digest": "1"}}
    path.write_text(json.dumps(bad))
    with pytest.raises(UserError, match=r"published\.digest must be a sha256 digest"):
        read_record(path)
