"""Tag scheme rules that need no image."""

from image_builder.tagging import sha_tag, version_tags


def test_version_tags_follow_prefects_scheme():
    assert version_tags("3.8.8", "3.12") == ["3.8.8-python3.12", "3.8-python3.12", "3-python3.12"]


def test_sha_tag_uses_twelve_hex_of_a_clean_commit():
    assert sha_tag("0123456789abcdef0123456789abcdef01234567") == "sha-0123456789ab"


def test_sha_tag_is_withheld_for_a_dirty_tree():
    assert sha_tag("0123456789abcdef0123456789abcdef01234567-dirty") is None


def test_sha_tag_is_withheld_when_revision_unknown():
    assert sha_tag("unknown") is None
    assert sha_tag(None) is None
