"""Tag scheme rules that need no image."""

from image_builder.tagging import child_tag, sha_tag, version_tags


def test_version_tags_follow_prefects_scheme():
    assert version_tags("3.8.8", "3.12") == ["3.8.8-python3.12", "3.8-python3.12", "3-python3.12"]


def test_sha_tag_uses_twelve_hex_of_a_clean_commit():
    assert sha_tag("0123456789abcdef0123456789abcdef01234567") == "sha-0123456789ab"


def test_sha_tag_is_withheld_for_a_dirty_tree():
    assert sha_tag("0123456789abcdef0123456789abcdef01234567-dirty") is None


def test_sha_tag_is_withheld_when_revision_unknown():
    assert sha_tag("unknown") is None
    assert sha_tag(None) is None


def test_server_variant_tags_end_in_server():
    assert version_tags("3.9.1", "3.13", "server") == [
        "3.9.1-python3.13-server",
        "3.9-python3.13-server",
        "3-python3.13-server",
    ]


def test_child_tag_changes_with_its_parent_and_its_packages_not_their_order():
    packages = ["tomli-w==1.2.0", "prefect==3.9.1"]
    tag = child_tag("3.9.1", "3.11", "sha256:" + "a" * 64, packages)
    assert tag.startswith("3.9.1-python3.11-") and len(tag.rsplit("-", 1)[1]) == 12
    assert child_tag("3.9.1", "3.11", "sha256:" + "a" * 64, packages[::-1]) == tag
    assert child_tag("3.9.1", "3.11", "sha256:" + "b" * 64, packages) != tag
    assert child_tag("3.9.1", "3.11", "sha256:" + "a" * 64, ["prefect==3.9.1"]) != tag
