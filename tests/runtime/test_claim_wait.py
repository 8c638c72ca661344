"""How the waiting mode reads the config map, on this machine (the container test runs it whole)."""

import time
import uuid

from prefect_aci_runtime.warm import read_config_map, wait_for_claim

RUN_ID = str(uuid.uuid4())


def test_a_map_there_at_start_is_taken_at_once_as_a_cold_fallback_gets_it(tmp_path):
    (tmp_path / "PREFECT__FLOW_RUN_ID").write_text(RUN_ID)
    (tmp_path / "RUN_LABEL").write_text("nightly")
    started = time.monotonic()
    assert wait_for_claim(tmp_path, max_wait=30, poll=0.1) == {
        "PREFECT__FLOW_RUN_ID": RUN_ID,
        "RUN_LABEL": "nightly",
    }
    assert time.monotonic() - started < 1


def test_an_id_that_is_not_a_flow_run_id_yet_is_not_a_claim(tmp_path):
    (tmp_path / "PREFECT__FLOW_RUN_ID").write_text(RUN_ID[:20])
    assert wait_for_claim(tmp_path, max_wait=0.3, poll=0.05) is None


def test_no_map_folder_waits_out_the_max_wait(tmp_path):
    started = time.monotonic()
    assert wait_for_claim(tmp_path / "absent", max_wait=0.3, poll=0.05) is None
    assert 0.3 <= time.monotonic() - started < 2


def test_dot_files_are_not_keys(tmp_path):
    (tmp_path / "..data").mkdir()
    (tmp_path / ".PREFECT__FLOW_RUN_ID.partial").write_text(RUN_ID)
    assert read_config_map(tmp_path) == {}
