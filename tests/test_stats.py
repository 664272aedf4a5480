"""repro.stats: bootstrap intervals over seeds x prompts that cover, paired comparisons, the three-way verdict."""
import numpy as np
import pandas as pd
import pytest

from dsrepro.repro import stats
from dsrepro.repro.stats import Arm, bootstrap, combine, verdict

TAU = stats.ratio_of_sums("tokens", "calls")


def _arm(rng, tau, n_seeds, n_prompts, seed_sd=0.0):
  calls = rng.integers(5, 30, (n_seeds, n_prompts)).astype(float)
  per_seed = tau * np.exp(rng.normal(0, seed_sd, (n_seeds, 1)))
  return Arm.of(tokens=calls * per_seed * np.exp(rng.normal(0, 0.2, calls.shape)), calls=calls)


def test_intervals_cover_the_truth_about_95_percent():
  """200 synthetic experiments with a known tau ratio of 1.1 (lognormal prompt noise): the 95% interval of the
  ratio covers it in 88-99% of them (a broken resampling, e.g. unpaired prompts, falls outside)."""
  rng = np.random.default_rng(0)
  hits = 0
  for _ in range(200):
    calls = rng.integers(5, 30, (1, 40)).astype(float)
    prompt = np.exp(rng.normal(0, 0.3, (1, 40)))  # shared difficulty: paired arms
    a = Arm.of(tokens=2.2 * calls * prompt * np.exp(rng.normal(0, 0.1, calls.shape)), calls=calls)
    b = Arm.of(tokens=2.0 * calls * prompt * np.exp(rng.normal(0, 0.1, calls.shape)), calls=calls)
    iv = bootstrap(lambda f: TAU(f["a"]) / TAU(f["b"]), {"a": a, "b": b}, n_boot=400, seed=1)
    hits += iv.lo <= 1.1 <= iv.hi
  assert 0.88 <= hits / 200 <= 0.99, hits


def test_paired_prompts_and_identical_arms():
  rng = np.random.default_rng(1)
  a = _arm(rng, 2.0, 1, 30)
  iv = bootstrap(lambda f: TAU(f["a"]) / TAU(f["b"]) - 1, {"a": a, "b": a})
  assert iv.estimate == iv.lo == iv.hi == 0.0  # the same prompts are drawn for both arms


def test_seed_variation_widens_the_interval():
  rng = np.random.default_rng(2)
  narrow = bootstrap(lambda f: TAU(f["a"]), {"a": _arm(rng, 2.0, 5, 50, seed_sd=0.0)})
  wide = bootstrap(lambda f: TAU(f["a"]), {"a": _arm(rng, 2.0, 5, 50, seed_sd=0.3)})
  assert (wide.hi - wide.lo) > 2 * (narrow.hi - narrow.lo)


def test_arms_must_share_prompts_and_shapes():
  rng = np.random.default_rng(3)
  with pytest.raises(ValueError, match="same prompts"):
    bootstrap(lambda f: 0.0, {"a": _arm(rng, 2, 1, 10), "b": _arm(rng, 2, 1, 11)})
  with pytest.raises(ValueError, match=r"\[seeds, prompts\]"):
    Arm.of(tokens=np.ones((2, 3)), calls=np.ones((2, 4)))


def test_nan_statistic_gives_an_inconclusive_interval():
  a = Arm.of(tokens=[[1.0, 2.0]], calls=[[0.0, 0.0]])
  iv = bootstrap(lambda f: TAU(f["a"]), {"a": a}, n_boot=50)
  assert np.isnan(iv.lo) and verdict(iv.lo, iv.hi) == stats.INCONCLUSIVE


@pytest.mark.parametrize("lo,hi,threshold,direction,want", [
    (0.1, 0.5, 0.0, 1, "reproduced"), (-0.5, -0.1, 0.0, 1, "contradicted"), (-0.1, 0.1, 0.0, 1, "inconclusive"),
    (0.05, 0.1, 0.15, -1, "reproduced"), (0.2, 0.3, 0.15, -1, "contradicted"), (1.0, 1.2, 1.0, 1, "inconclusive")])
def test_verdict(lo, hi, threshold, direction, want):
  assert verdict(lo, hi, threshold, direction) == want


def test_combine():
  R, C, I = stats.REPRODUCED, stats.CONTRADICTED, stats.INCONCLUSIVE
  assert combine([R, R]) == R and combine([R, I]) == I and combine([R, C, I]) == C and combine([]) == I


def test_spearman():
  assert stats.spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
  assert stats.spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
  assert np.isnan(stats.spearman([1, 2], [1, 2])) and np.isnan(stats.spearman([1, 2, 3], [5, 5, 5]))
  rng = np.random.default_rng(5)
  for k in range(3, 40):  # average ranks for ties, NaN pairs dropped, inf kept: pandas' rank() and dropna()
    x, y = rng.integers(0, 4, k).astype(float), rng.normal(size=k).round(1)
    x[rng.integers(0, k)], y[rng.integers(0, k)] = np.nan, np.inf
    d = pd.DataFrame({"x": x, "y": y}).dropna()
    want = np.corrcoef(d.x.rank(), d.y.rank())[0, 1] if d.x.nunique() > 1 and len(d) >= 3 else np.nan
    assert stats.spearman(x, y) == pytest.approx(want, nan_ok=True)


def test_fast_resampling_equals_the_reference():
  """The same draws and the same statistic values, for one- and many-seed arms, fields of mixed dtypes (their
  order kept) and a statistic that reads the fields' order; a different seed gives other values."""
  rng = np.random.default_rng(6)
  arms = {"a": Arm({"tokens": rng.integers(1, 9, (3, 7)).astype(float), "n": rng.integers(0, 3, (3, 7)),
                    "calls": rng.integers(1, 5, (3, 7)).astype(float)}),
          "b": _arm(rng, 2.0, 1, 7), "c": _arm(rng, 1.5, 2, 7)}

  def stat(f):
    assert list(f["a"]) == ["tokens", "n", "calls"] and f["a"]["n"].dtype == np.int64
    return TAU(f["a"]) - TAU(f["b"]) + f["c"]["tokens"][1, 0] + f["a"]["n"].sum()
  ref = stats.resampled_reference(stat, arms, 300, seed=4)
  np.testing.assert_array_equal(stats.resampled(stat, arms, 300, seed=4), ref)
  assert not np.array_equal(stats.resampled(stat, arms, 300, seed=5), ref)
