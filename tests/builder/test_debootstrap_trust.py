"""The offline base trusts only what Debian signed: debootstrap checks every Release signature
against Debian's keyring and fails without one, its warnings are shown, and the mirror is https
wherever the machine reaches it."""

import io
import socket
import stat

import pytest
from rich.console import Console

from image_builder.base import (
    DEBIAN_KEYRING,
    HTTP_MIRROR,
    HTTPS_MIRROR,
    check_keyring,
    choose_mirror,
    debootstrap_command,
    https_unreachable,
    run_debootstrap,
)
from image_builder.settings import ImageSettings
from prefect_aci.core.errors import UserError


def _console() -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, width=400, color_system=None), out


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_debootstrap_is_told_to_check_signatures_against_the_keyring(tmp_path):
    command = debootstrap_command(
        "debootstrap", "bookworm", tmp_path / "rootfs", HTTPS_MIRROR, DEBIAN_KEYRING
    )
    assert "--force-check-gpg" in command
    assert f"--keyring={DEBIAN_KEYRING}" in command
    assert command[-3:] == ["bookworm", str(tmp_path / "rootfs"), HTTPS_MIRROR]


def test_a_missing_keyring_is_one_error_that_says_what_to_install(tmp_path):
    with pytest.raises(UserError) as caught:
        check_keyring(tmp_path / "debian-archive-keyring.gpg")
    message = str(caught.value)
    assert "\n" not in message
    assert "apt-get install debian-archive-keyring" in message


def test_debootstraps_warnings_reach_the_output(tmp_path):
    fake = tmp_path / "debootstrap"
    fake.write_text(
        "#!/bin/sh\n"
        "echo 'I: Retrieving InRelease'\n"
        "echo 'W: Cannot check Release signature; keyring file not available [x]' >&2\n"
        "echo 'I: Base system installed successfully.'\n"
    )
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    console, out = _console()
    run_debootstrap([str(fake)], HTTPS_MIRROR, console)
    assert (
        "warning: debootstrap: Cannot check Release signature; keyring file not available [x]"
        in out.getvalue()
    )


def test_a_failing_debootstrap_is_one_error_with_its_reason(tmp_path):
    fake = tmp_path / "debootstrap"
    fake.write_text(
        "#!/bin/sh\necho 'E: Release signed by unknown key' >&2\n"
        "echo '   You can find the latest Debian release key at https://x' >&2\nexit 1\n"
    )
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    with pytest.raises(UserError, match="debootstrap failed: E: Release signed by unknown key"):
        run_debootstrap([str(fake)], HTTPS_MIRROR, _console()[0])


def test_the_mirror_is_chosen_unless_configured(monkeypatch):
    monkeypatch.delenv("PREFECT_ACI_DEBIAN_MIRROR", raising=False)
    assert ImageSettings(_env_file=None).debian_mirror is None


def test_a_configured_mirror_is_used_without_probing():
    def probe(url: str) -> str | None:
        raise AssertionError(f"probed {url}")

    assert choose_mirror("http://mirror.example/debian", "bookworm", _console()[0], probe) == (
        "http://mirror.example/debian"
    )


def test_https_is_the_mirror_where_it_answers():
    asked: list[str] = []
    console, out = _console()
    mirror = choose_mirror(None, "trixie", console, lambda url: asked.append(url))
    assert mirror == HTTPS_MIRROR
    assert asked == [f"{HTTPS_MIRROR}/dists/trixie/Release"]
    assert out.getvalue() == ""


def test_http_is_the_fallback_with_a_warning_where_https_does_not_answer():
    console, out = _console()
    mirror = choose_mirror(None, "bookworm", console, lambda url: "[SSL] handshake failed")
    assert mirror == HTTP_MIRROR
    printed = out.getvalue()
    assert "[SSL] handshake failed" in printed
    assert "signatures are still checked" in printed


def test_the_probe_reports_why_https_does_not_answer():
    reason = https_unreachable(f"https://127.0.0.1:{_free_port()}/dists/bookworm/Release")
    assert reason
    assert "refused" in reason.lower()
