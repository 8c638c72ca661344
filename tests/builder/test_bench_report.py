"""The bench's arithmetic: ratios and targets from figures (no timing is measured here)."""

from image_builder.bench import ChildFigures, Figures, report


def _figures(**values) -> Figures:
    defaults = dict(
        image_id="x",
        cold_build_s=10.0,
        rebuild_s=0.5,
        uncompressed_bytes=400,
        compressed_bytes=100,
        start_to_prefect_version_s=2.0,
        start_to_worker_import_s=2.0,
        first_push_bytes=100,
        repush_bytes=1000,
        repush_layers=1,
    )
    return Figures(**{**defaults, **values})


def test_ratios_are_ours_over_baseline():
    result = report(_figures(compressed_bytes=25), _figures(compressed_bytes=100), {}, "base")
    assert result["figures"]["compressed_bytes"]["ratio"] == 0.25
    assert result["targets"]["compressed_bytes"]["met"] is True
    missed = report(_figures(compressed_bytes=40), _figures(compressed_bytes=100), {}, "base")
    assert missed["targets"]["compressed_bytes"]["met"] is False


def test_child_start_is_compared_with_installing_at_start():
    child = ChildFigures(image_id="c", build_s=5.0, added_compressed_bytes=9, start_s=2.0)
    result = report(_figures(start_with_extra_pip_s=4.0), _figures(), {}, "base", child)
    assert result["child"]["child_start_vs_extra_pip"] == 0.5
    assert result["child"]["child_build_s"] == 5.0


def test_missed_target_is_reported_not_hidden():
    result = report(_figures(cold_build_s=7.0), _figures(cold_build_s=10.0), {}, "base")
    assert result["targets"]["cold_build_s"] == {"target": "<= 0.6", "ratio": 0.7, "met": False}


def test_rebuild_is_measured_against_our_own_cold_build():
    result = report(_figures(cold_build_s=100.0, rebuild_s=20.0), _figures(), {}, "base")
    assert result["targets"]["rebuild_s_vs_our_cold"]["ratio"] == 0.2
    assert result["targets"]["rebuild_s_vs_our_cold"]["met"] is False


def test_repush_of_more_than_one_layer_misses_its_target():
    result = report(_figures(repush_layers=2), _figures(), {}, "base")
    assert result["targets"]["repush_layers"]["met"] is False


def test_zero_baseline_gives_no_ratio_instead_of_dividing_by_zero():
    result = report(_figures(repush_bytes=0), _figures(repush_bytes=0), {}, "base")
    assert result["figures"]["repush_bytes"]["ratio"] is None
