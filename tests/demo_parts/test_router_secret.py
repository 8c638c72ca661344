"""Each stack's stand-in has its own secret for the IMDS router, readable by the user only."""

import stat

from prefect_aci.local_aci import server
from tests.demo_parts.test_azurite_key import local_side


def test_each_stack_has_its_own_router_secret_readable_by_its_user_only(tmp_path):
    first, second = local_side(tmp_path / "a"), local_side(tmp_path / "b")
    assert len(first.router_secret()) >= 24 and first.router_secret() != second.router_secret()
    mode = (first.folder / server.ROUTER_SECRET).stat().st_mode
    assert stat.S_IMODE(mode) == 0o600
