"""The distillation recipes of DistillSpec (arXiv 2310.08461): Table 1's KD algorithms and Fig. 4's grid of training
data source x divergence. These are the ONLY lists of those names in the package; tables, plots and the report
read them from here.

``KDConfig`` is one recipe: a divergence (``dsrepro.kd.divergences``), a data source (``dsrepro.kd.batches``) and,
for AdaSPEC (arXiv 2510.19779), the fraction k of tokens kept by its selective loss. Choices:

- ``temperature`` (1.0, DistillSpec App. C.3) is used both to sample generated data and inside the divergence.
- ImitKD and f-Distill mix their two sources in fixed proportion ``mix`` (default 0.5: equal parts, as Fig. 4's
  "student + teacher"), split deterministically within each batch (first rows from the first source), rather than
  ImitKD's annealed coin flip. On-policy GKD is listed with FKL (Table 1 allows any divergence; JSD is
  ``grid_config("student", "jsd")``).
"""
from __future__ import annotations

import dataclasses

import numpy as np

from dsrepro.kd.divergences import DIVERGENCES

__all__ = ["DATA_SOURCES", "KDConfig", "ALGORITHMS", "LABELS", "DISTILLSPEC", "SUPERVISED", "SFT", "GRID_DATA",
           "grid_config",
           "grid_cells", "model_generated"]

DATA_SOURCES = ("ground_truth", "teacher", "student", "teacher+student", "ground_truth+student")


@dataclasses.dataclass(frozen=True)
class KDConfig:
  """One distillation recipe (hashable, JSON-able: it names the run directory together with the TrainConfig)."""
  divergence: str = "fkl"          # "fkl" | "rkl" | "jsd" | "tvd" (DIVERGENCES)
  beta: float = 0.5                # JSD mixture weight, TRL convention (0 = FKL, 1 = RKL)
  data: str = "ground_truth"       # one of DATA_SOURCES; "a+b" is a mixture
  mix: float = 0.5                 # mixtures: fraction of each batch's rows from the SECOND source
  temperature: float = 1.0         # sampling temperature of generated data AND of the divergence (paper C.3)
  max_new_tokens: int = 64         # generated continuation length (the row width is prompt width + this)
  adaspec_k: float | None = None   # None: plain KD; k in (0, 1]: AdaSPEC selective KD keeping the top-k tokens

  def __post_init__(self):
    if self.divergence not in DIVERGENCES:
      raise ValueError(f"KDConfig.divergence={self.divergence!r}; expected one of {DIVERGENCES}")
    if self.data not in DATA_SOURCES:
      raise ValueError(f"KDConfig.data={self.data!r}; expected one of {DATA_SOURCES}")
    for name, lo, hi in (("beta", 0.0, 1.0), ("mix", 0.0, 1.0)):
      v = getattr(self, name)
      if isinstance(v, bool) or not isinstance(v, (int, float)) or not lo <= v <= hi:
        raise ValueError(f"KDConfig.{name} must be a number in [{lo}, {hi}], got {v!r}")
    t = self.temperature
    if isinstance(t, bool) or not isinstance(t, (int, float)) or not t > 0 or not np.isfinite(t):
      raise ValueError(f"KDConfig.temperature must be a finite number > 0, got {t!r}")
    n = self.max_new_tokens
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
      raise ValueError(f"KDConfig.max_new_tokens must be an integer >= 1, got {n!r}")
    k = self.adaspec_k
    if k is not None:
      if isinstance(k, bool) or not isinstance(k, (int, float)) or not 0.0 < k <= 1.0:
        raise ValueError(f"KDConfig.adaspec_k must be None or a number in (0, 1], got {k!r}")
      if self.divergence != "fkl":
        raise ValueError(f"KDConfig.adaspec_k={k} selects tokens by forward KL; divergence must be 'fkl', got "
                         f"{self.divergence!r}")

  @property
  def sources(self) -> tuple[str, ...]:
    return tuple(self.data.split("+"))

  @property
  def generates(self) -> bool:
    """Whether any row is sampled from a model (needs pad/eos ids and prompt width + max_new_tokens columns)."""
    return any(s != "ground_truth" for s in self.sources)


# The paper's Table 1.
ALGORITHMS: dict[str, KDConfig] = {
    "supervised_kd": KDConfig(divergence="fkl", data="ground_truth"),
    "seqkd": KDConfig(divergence="fkl", data="teacher"),
    "imitkd": KDConfig(divergence="fkl", data="ground_truth+student"),
    "f_distill": KDConfig(divergence="tvd", data="teacher+student"),
    "gkd": KDConfig(divergence="fkl", data="student"),  # on-policy; any divergence allowed (grid_config for JSD)
}

# How tables, plots and the report name the drafts: the SFT draft every KD run starts from, then Table 1.
SFT = "SFT"
LABELS = {SFT: "SFT draft", "supervised_kd": "SupervisedKD", "seqkd": "SeqKD", "imitkd": "ImitKD",
          "f_distill": "f-Distill", "gkd": "GKD (on-policy)"}
DISTILLSPEC = "gkd"  # the paper's recommended recipe (student-generated data), "DistillSpec" in Fig. 1 / Table D.1
SUPERVISED = "supervised_kd"  # FKL on the fixed ground truth: the fixed-data baseline (Fig. 2, AdaSPEC's comparison)


def model_generated(name: str) -> bool:
  """Whether an ALGORITHMS recipe trains on model-generated data only (no fixed ground-truth rows)."""
  return "ground_truth" not in ALGORITHMS[name].sources


# The recipe grid of the paper's Fig. 4: data source (rows) x divergence (columns, ``DIVERGENCES``).
GRID_DATA = ("ground_truth", "student", "teacher", "teacher+student")


def grid_config(data: str, divergence: str, **overrides) -> KDConfig:
  """The Fig. 4 cell (data source x divergence); ``overrides`` set other KDConfig fields (max_new_tokens, ...)."""
  if data not in GRID_DATA:
    raise ValueError(f"grid data source {data!r} not in {GRID_DATA}")
  if divergence not in DIVERGENCES:
    raise ValueError(f"grid divergence {divergence!r} not in {DIVERGENCES}")
  return KDConfig(divergence=divergence, data=data, **overrides)


def grid_cells() -> list[tuple[str, str]]:
  """Every Fig. 4 cell as (data source, divergence), rows first."""
  return [(data, div) for data in GRID_DATA for div in DIVERGENCES]
