"""The production bases are pinned by digest, and `image pin-base` re-pins them."""

import re

import pytest

from image_builder.base import PYTHONS, online_base
from image_builder.base_pins import (
    ARG_DEFAULT,
    DOCKERFILES,
    pinned,
    read_pins,
    refresh_pins,
    repin_dockerfile,
)
from image_builder.settings import DEFAULT_BASE_IMAGE, ImageSettings
from prefect_aci.core.errors import UserError

OLD = "sha256:" + "1" * 64
NEW = "sha256:" + "2" * 64


def test_every_production_base_is_pinned_by_digest():
    for python in PYTHONS:
        assert re.fullmatch(
            rf"python:{python}-slim-bookworm@sha256:[0-9a-f]{{64}}", online_base(python)
        )


def test_the_default_base_is_the_pinned_312(monkeypatch):
    monkeypatch.delenv("PREFECT_ACI_BASE_IMAGE", raising=False)
    assert online_base("3.12") == DEFAULT_BASE_IMAGE
    assert ImageSettings(_env_file=None).base_image == DEFAULT_BASE_IMAGE


def test_the_lock_holds_only_pins_and_comments():
    assert set(read_pins()) == {f"python:{python}-slim-bookworm" for python in PYTHONS}


def test_a_reference_that_is_not_pinned_is_left_alone():
    assert pinned("registry.example/team/base:1") == "registry.example/team/base:1"


def test_refresh_rewrites_each_pin_with_the_registrys_digest(tmp_path):
    lock = tmp_path / "base-images.lock"
    lock.write_text(f"# why\npython:3.12-slim-bookworm@{OLD}\nother:1@{NEW}\n")
    asked = []

    def digest_of(reference: str) -> str:
        asked.append(reference)
        return NEW

    moved = refresh_pins(digest_of, lock)
    assert asked == ["python:3.12-slim-bookworm", "other:1"]
    assert moved == {"python:3.12-slim-bookworm": f"python:3.12-slim-bookworm@{NEW}"}
    assert lock.read_text() == f"# why\npython:3.12-slim-bookworm@{NEW}\nother:1@{NEW}\n"


def test_refresh_refuses_an_answer_that_is_no_digest(tmp_path):
    lock = tmp_path / "base-images.lock"
    lock.write_text(f"python:3.12-slim-bookworm@{OLD}\n")
    with pytest.raises(UserError, match="no sha256 digest"):
        refresh_pins(lambda reference: "latest", lock)
    assert lock.read_text() == f"python:3.12-slim-bookworm@{OLD}\n"


def test_a_malformed_pin_is_one_error_naming_the_line(tmp_path):
    lock = tmp_path / "base-images.lock"
    lock.write_text("# ok\npython:3.12-slim-bookworm\n")
    with pytest.raises(UserError, match=r"base-images.lock:2: expected name:tag@sha256"):
        read_pins(lock)


def test_the_dockerfiles_default_base_is_the_pinned_one():
    for dockerfile in DOCKERFILES:
        (default,) = ARG_DEFAULT.finditer(dockerfile.read_text())
        assert default[0] == f"ARG BASE_IMAGE={DEFAULT_BASE_IMAGE}", dockerfile


def test_repinning_a_dockerfile_moves_only_its_base_default(tmp_path):
    dockerfile = tmp_path / "Dockerfile"
    text = "# x\nARG BASE_IMAGE=python:3.12-slim-bookworm@{}\nFROM ${{BASE_IMAGE}}\n"
    dockerfile.write_text(text.format(OLD))
    repin_dockerfile(dockerfile, {"python:3.12-slim-bookworm": f"python:3.12-slim-bookworm@{NEW}"})
    assert dockerfile.read_text() == text.format(NEW)
