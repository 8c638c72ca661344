"""The local ACI bench's arithmetic (`prefect-aci demo bench`): a run's phases from its state
history, medians, warm/cold, the goal, the JSON keys and the options' bounds. Nothing is timed
here; `make bench` runs the bench itself."""

import json
from datetime import UTC, datetime, timedelta

import pytest

from prefect_aci.cli.demo import bench_table
from prefect_aci.core.errors import UserError
from prefect_aci.demo.bench import (
    COLD,
    PHASES,
    WARM,
    BenchFigures,
    Burst,
    RunTiming,
    check_options,
    container_memory_bytes,
    last_span,
    median,
    ratio,
    timing,
)

T0 = datetime(2026, 12, 4, 16, 0, tzinfo=UTC)


def history(pending: float, running: float, completed: float, start: float = 0.0):
    """A run's states, shuffled, as seconds after T0 + start."""
    at = lambda s: T0 + timedelta(seconds=start + s)  # noqa: E731
    return [
        ("RUNNING", at(running)),
        ("SCHEDULED", at(0)),
        ("COMPLETED", at(completed)),
        ("PENDING", at(pending)),
    ]


def run(to_running: float, to_completed: float, warm: bool | None = None) -> RunTiming:
    return timing("id", history(1.0, to_running, to_completed), warm=warm)


def test_a_run_is_split_by_its_state_history():
    t = timing("r1", history(pending=4.2, running=8.7, completed=9.0), observed_s=9.61, warm=True)
    assert t.scheduled_to_pending_s == 4.2
    assert t.pending_to_running_s == 4.5
    assert t.running_to_completed_s == 0.3
    assert t.scheduled_to_running_s == 8.7
    assert t.scheduled_to_completed_s == 9.0
    assert t.observed_s == 9.61
    assert t.final == "COMPLETED"
    assert t.warm is True


def test_a_phase_never_reached_is_none():
    later = T0 + timedelta(seconds=3)
    crashed = [("CRASHED", later), ("SCHEDULED", T0), ("PENDING", T0 + timedelta(seconds=2))]
    t = timing("r2", crashed)
    assert t.scheduled_to_running_s is None
    assert t.scheduled_to_completed_s is None
    assert t.scheduled_to_pending_s == 2.0
    assert t.final == "CRASHED"  # the latest state by its timestamp


def test_median_skips_unknown_and_ratio_is_warm_over_cold():
    assert median([3.0, None, 1.0, 2.0]) == 2.0
    assert median([None]) is None
    assert ratio(2.0, 8.0) == 0.25
    assert ratio(None, 8.0) is None
    assert ratio(2.0, 0.0) is None


def figures(big: Burst | None = None) -> BenchFigures:
    result = BenchFigures(standby=10)
    result.runs[COLD] = [run(10.0, 11.0), run(12.0, 13.0), run(8.0, 9.0), run(9, 10), run(11, 12)]
    result.runs[WARM] = [run(2.0, 3.0, True)] * 4 + [run(6.0, 7.0, False)]
    result.bursts = {COLD: Burst(COLD, 10, completed=10), WARM: Burst(WARM, 10, completed=10)}
    result.big_burst = big
    return result


def test_the_json_has_the_issues_keys_and_medians_of_each_path():
    data = json.loads(json.dumps(figures().as_dict()))
    fig = data["figures"]
    assert fig["scheduled_to_running_s"] == {"cold": 10.0, "warm": 2.0, "warm_over_cold": 0.2}
    assert fig["scheduled_to_completed_s"] == {"cold": 11.0, "warm": 3.0, "warm_over_cold": 0.27}
    assert set(fig) == set(PHASES)
    assert data["runs_each"] == 5
    assert data["warm_runs_claimed"] == 4
    assert data["standby_pool_size"] == 10
    assert set(data["burst"]) == {"cold", "warm"}
    assert data["big_burst"] is None
    assert len(data["one_at_a_time"]["warm"]) == 5


def test_the_goal():
    big = Burst(COLD, 50, completed=50, groups_left=0)
    goal = figures(big).goal()
    assert goal == {
        "scheduled_to_running_warm_over_cold_at_most_0_5": True,
        "scheduled_to_completed_warm_under_5_s": True,
        "big_burst_all_completed_no_group_left": True,
    }
    big.groups_left = 1
    assert figures(big).goal()["big_burst_all_completed_no_group_left"] is False
    assert figures(None).goal()["big_burst_all_completed_no_group_left"] is None


def test_a_burst_lasts_from_the_first_scheduled_to_the_last_completed():
    states = {"a": history(1, 2, 5.0), "b": history(1, 2, 3.0, start=4.0)}
    runs = [timing(k, v) for k, v in states.items()]
    assert last_span(runs, states) == 7.0
    burst = Burst(COLD, 2, completed=2, runs=runs)
    assert burst.summary()["median"]["scheduled_to_completed_s"] == 4.0
    assert burst.summary()["claims_unread"] is None  # not read for a cold burst


def test_memory_as_docker_stats_shows_it():
    v2 = {"memory_stats": {"usage": 300 * 2**20, "stats": {"inactive_file": 100 * 2**20}}}
    v1 = {"memory_stats": {"usage": 300, "stats": {"total_inactive_file": 50}}}
    assert container_memory_bytes(v2) == 200 * 2**20
    assert container_memory_bytes(v1) == 250
    assert container_memory_bytes({"memory_stats": {}}) is None


@pytest.mark.parametrize(
    ("runs", "burst", "big", "standby", "word"),
    [(4, 10, 50, 10, "--runs"), (5, 21, 50, 10, "--burst"), (5, 10, 51, 10, "--big-burst"),
     (5, 10, 50, 0, "--standby")],
)  # fmt: skip
def test_options_out_of_bounds_are_one_error_line(runs, burst, big, standby, word):
    with pytest.raises(UserError, match=word):
        check_options(runs, burst, big, standby)
    check_options(5, 10, 0, 10)  # 0 skips the big burst


def test_the_printed_table_has_a_row_per_figure():
    big = Burst(COLD, 50, completed=50, worker_peak_memory_mib=312.4)
    table = bench_table(figures(big))
    first = [str(cell) for cell in table.columns[0]._cells]
    assert any(cell.startswith("Scheduled to Running") for cell in first)
    assert any("the worker's peak memory" in cell for cell in first)
    assert "312 MiB" in [str(cell) for cell in table.columns[1]._cells]
