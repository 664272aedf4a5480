"""Uncertainty for every number a verdict uses, and the three-way verdict rule.

Intervals are percentile bootstrap intervals (95%, ``N_BOOT`` >= 1000 resamples) over the evaluation prompts and,
where a claim is about a training recipe, over repeated training runs (seeds): each resample draws the seeds of
every arm with replacement (independently per arm: runs of different recipes are not paired), then the prompts
with replacement (ONE draw shared by all arms: every draft is evaluated on the same prompts, so comparisons are
paired), and recomputes the statistic. Ratios such as tau = tokens / target calls are recomputed from the
resampled sums (ratio estimators), not averaged per prompt. A statistic near a bound it cannot pass can have its
estimate outside its own percentile interval: e.g. a rank correlation of a few drafts' mean tau at 0.91, where a
resample of prompts only adds noise to the ranking, so most resamples rank worse (seen in Fig. 3c at the cpu
profile). The verdict reads the interval, not the estimate.

Verdicts (decided by rules written before the runs they judge): a claim's quantity has a direction and a threshold
(e.g. tau(distilled) / tau(SFT) - 1 > 0). *reproduced*: the interval lies entirely on the paper's side of the
threshold; *contradicted*: entirely on the other side; *inconclusive*: otherwise. A claim over several cells (tasks
x decodings) is reproduced when every cell is, contradicted when any cell is, else inconclusive.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping

import numpy as np

__all__ = ["N_BOOT", "LEVEL", "REPRODUCED", "CONTRADICTED", "INCONCLUSIVE", "Interval", "Arm", "Stat", "bootstrap",
           "resampled", "resampled_reference", "ratio_of_sums", "verdict", "combine", "spearman"]

N_BOOT = 2000
LEVEL = 0.95
REPRODUCED, CONTRADICTED, INCONCLUSIVE = "reproduced", "contradicted", "inconclusive"


@dataclasses.dataclass(frozen=True)
class Interval:
  """A point estimate (the statistic on all the data) and its bootstrap interval."""
  estimate: float
  lo: float
  hi: float

  def __str__(self) -> str:
    return f"{self.estimate:+.3g} [{self.lo:+.3g}, {self.hi:+.3g}]"


@dataclasses.dataclass(frozen=True)
class Arm:
  """One compared condition (a draft, a recipe): per-seed, per-prompt arrays ``fields[name]`` of shape [S, N]
  (S training runs, N evaluation prompts; S = 1 for a condition without repeated runs, e.g. the SFT draft)."""
  fields: Mapping[str, np.ndarray]

  def __post_init__(self):
    shapes = {k: np.shape(v) for k, v in self.fields.items()}
    if len({s for s in shapes.values()}) != 1 or len(next(iter(shapes.values()))) != 2:
      raise ValueError(f"every field of an Arm must be [seeds, prompts] of one shape, got {shapes}")

  @classmethod
  def of(cls, **fields) -> "Arm":
    """From per-seed rows: ``Arm.of(tokens=[[...], [...]], calls=...)`` (lists of per-prompt lists or arrays)."""
    return cls({k: np.atleast_2d(np.asarray(v, np.float64)) for k, v in fields.items()})

  @property
  def n_seeds(self) -> int:
    return next(iter(self.fields.values())).shape[0]

  @property
  def n_prompts(self) -> int:
    return next(iter(self.fields.values())).shape[1]

  def take(self, seeds: np.ndarray, prompts: np.ndarray) -> dict[str, np.ndarray]:
    """The fields at the drawn seeds x prompts: {name: [len(seeds), len(prompts)]}."""
    return {k: v[np.ix_(seeds, prompts)] for k, v in self.fields.items()}


Stat = Callable[[dict[str, dict[str, np.ndarray]]], float]  # {arm: {field: [S, N] array}} -> a number


def resampled_reference(stat: Stat, arms: Mapping[str, Arm], n_boot: int, seed: int) -> np.ndarray:
  """The statistic on ``n_boot`` resamples, written for reading: each resample draws the prompts (shared by all
  arms), then each arm's seeds, and takes the fields with :meth:`Arm.take`. :func:`resampled` is the fast version
  of exactly this (same draws, same numbers; tests/test_stats.py checks one against the other)."""
  rng, n_prompts = np.random.default_rng(seed), next(iter(arms.values())).n_prompts
  values = np.empty(n_boot)
  for b in range(n_boot):
    prompts = rng.integers(0, n_prompts, n_prompts)
    values[b] = stat({name: a.take(rng.integers(0, a.n_seeds, a.n_seeds), prompts) for name, a in arms.items()})
  return values


def resampled(stat: Stat, arms: Mapping[str, Arm], n_boot: int, seed: int) -> np.ndarray:
  """:func:`resampled_reference`, 2-3x faster: each arm's fields are stacked by dtype as [F, S, N] once, so a
  resample takes a whole group with one indexing operation instead of an ``np.ix_`` per field, and an arm with one
  seed is not indexed over seeds (its draw is always seed 0; the draw is still made, so the stream is the same)."""
  rng, n_prompts = np.random.default_rng(seed), next(iter(arms.values())).n_prompts
  groups = {}  # arm -> [(field names, [F, S, N] array)], one entry per dtype
  for name, a in arms.items():
    by_dtype: dict[np.dtype, list[str]] = {}
    for k, v in a.fields.items():
      by_dtype.setdefault(np.asarray(v).dtype, []).append(k)
    groups[name] = [(keys, np.stack([np.asarray(a.fields[k]) for k in keys])) for keys in by_dtype.values()]
  values = np.empty(n_boot)
  for b in range(n_boot):
    prompts = rng.integers(0, n_prompts, n_prompts)
    drawn = {}
    for name, a in arms.items():
      seeds = rng.integers(0, a.n_seeds, a.n_seeds)
      took = {k: v for keys, x in groups[name]
              for k, v in zip(keys, (x if a.n_seeds == 1 else x[:, seeds])[:, :, prompts])}
      drawn[name] = took if len(groups[name]) == 1 else {k: took[k] for k in a.fields}  # the fields' order
    values[b] = stat(drawn)
  return values


def bootstrap(stat: Stat, arms: Mapping[str, Arm], n_boot: int = N_BOOT, seed: int = 0,
              level: float = LEVEL) -> Interval:
  """``stat({arm: {field: [S, N] array}})`` on all the data and its percentile interval over seeds x prompts
  resamples (module doc; :func:`resampled`). Resamples where the statistic is not finite (e.g. a 0/0) are dropped;
  if fewer than half remain, or there are fewer than 2 prompts, the interval is (nan, nan): inconclusive."""
  n = {a.n_prompts for a in arms.values()}
  if len(n) != 1:
    raise ValueError(f"all arms must be evaluated on the same prompts, got prompt counts {sorted(n)}")
  n_prompts = n.pop()
  full = {name: a.take(np.arange(a.n_seeds), np.arange(n_prompts)) for name, a in arms.items()}
  estimate = float(stat(full))
  if n_prompts < 2:  # nothing to resample: no interval (a single prompt says nothing about the spread)
    return Interval(estimate, float("nan"), float("nan"))
  values = resampled(stat, arms, n_boot, seed)
  values = values[np.isfinite(values)]
  if len(values) < n_boot / 2:
    return Interval(estimate, float("nan"), float("nan"))
  q = (1 - level) / 2
  lo, hi = np.quantile(values, [q, 1 - q])
  return Interval(estimate, float(lo), float(hi))


def ratio_of_sums(num: str, den: str) -> Callable[[dict[str, np.ndarray]], float]:
  """``f(fields) = sum(fields[num]) / sum(fields[den])``: tau (tokens / calls), alpha (accepted / drafted)."""
  def f(fields: dict[str, np.ndarray]) -> float:
    d = float(fields[den].sum())
    return float(fields[num].sum()) / d if d else float("nan")
  return f


def verdict(lo: float, hi: float, threshold: float = 0.0, direction: int = +1) -> str:
  """Three-way verdict of an interval against the paper's side of ``threshold`` (``direction`` +1: above, -1:
  below)."""
  if not (np.isfinite(lo) and np.isfinite(hi)):
    return INCONCLUSIVE
  lo, hi, t = (lo, hi, threshold) if direction > 0 else (-hi, -lo, -threshold)
  return REPRODUCED if lo > t else CONTRADICTED if hi < t else INCONCLUSIVE


def combine(verdicts) -> str:
  """A claim over several cells: reproduced if every cell is, contradicted if any cell is, else inconclusive."""
  verdicts = list(verdicts)
  if not verdicts:
    return INCONCLUSIVE
  if CONTRADICTED in verdicts:
    return CONTRADICTED
  return REPRODUCED if all(v == REPRODUCED for v in verdicts) else INCONCLUSIVE


def _ranks(x: np.ndarray) -> np.ndarray:
  """1-based ranks, ties given their average rank (pandas' ``rank()``): a tie group of c values ending at
  position e (cumulative count) gets e - (c - 1) / 2."""
  _, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
  return (np.cumsum(counts) - (counts - 1) / 2)[inverse]


def spearman(x, y) -> float:
  """Spearman rank correlation (average ranks for ties); nan with < 3 finite pairs or a constant input. In
  numpy, not pandas: the bootstrap calls it once per resample."""
  x, y = np.asarray(x, float), np.asarray(y, float)
  keep = ~(np.isnan(x) | np.isnan(y))
  x, y = x[keep], y[keep]
  if len(x) < 3 or np.unique(x).size < 2 or np.unique(y).size < 2:
    return float("nan")
  return float(np.corrcoef(_ranks(x), _ranks(y))[0, 1])
