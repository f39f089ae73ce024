"""benchmarks/pooled.py's paired comparison against values computed by hand."""

import argparse
import importlib.util
import pathlib

import pytest

_spec = importlib.util.spec_from_file_location("pooled", pathlib.Path(__file__).parents[1] / "benchmarks" / "pooled.py")
pooled = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(pooled)


def test_paired_difference_by_hand():
    # pairs (first, second): (1,1) (1,0) (0,1) (0,1) (0,0): second alone solves 2, first alone 1, of n = 5
    p = pooled.paired_difference([True, True, False, False, False], [True, False, True, True, False])
    assert (p["pairs"], p["only_second"], p["only_first"]) == (5, 2, 1)
    assert p["difference"] == pytest.approx(0.2)
    half = 1.96 * ((3 / 5 - 0.2 ** 2) / 5) ** 0.5          # 1.96 * sqrt(0.112) = 0.65594
    assert (p["low"], p["high"]) == (pytest.approx(0.2 - half), pytest.approx(0.2 + half))
    assert half == pytest.approx(0.65594, abs=1e-5)
    assert p["mcnemar_p"] == pytest.approx(1.0)             # 2 * (C(3,0) + C(3,1)) / 2^3, capped at 1


def test_mcnemar_exact_tail():
    # five discordant pairs, all the second's: 2 * (1/2)^5
    p = pooled.paired_difference([False] * 5 + [True] * 3, [True] * 5 + [True] * 3)
    assert p["mcnemar_p"] == pytest.approx(0.0625)
    assert p["difference"] == pytest.approx(5 / 8)


def test_unmatched_episodes_are_refused():
    with pytest.raises(ValueError, match="matched episodes"):
        pooled.paired_difference([True, False], [True])


def test_episode_span():
    assert pooled.episode_span("100:300") == range(100, 300)
    assert 10**6 in pooled.episode_span("100:") and 99 not in pooled.episode_span("100:")
    assert pooled.episode_span(":100") == range(100)
    with pytest.raises(argparse.ArgumentTypeError, match="START:STOP"):
        pooled.episode_span("100")


def test_paired_score_difference_by_hand():
    # differences 10, 0, -4, 10: mean 4; a constant difference has a zero-width interval
    p = pooled.paired_score_difference([0.0, 50.0, 54.0, 20.0], [10.0, 50.0, 50.0, 30.0], resamples=2000)
    assert (p["pairs"], p["difference"]) == (4, pytest.approx(4.0))
    assert -4.0 <= p["low"] < 4.0 < p["high"] <= 10.0
    flat = pooled.paired_score_difference([1.0, 2.0, 3.0], [6.0, 7.0, 8.0])
    assert (flat["difference"], flat["low"], flat["high"]) == (pytest.approx(5.0),) * 3
    with pytest.raises(ValueError, match="matched episodes"):
        pooled.paired_score_difference([1.0], [])
