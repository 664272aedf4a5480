"""What a paper figure is in this package: a :class:`FigureSpec` (one per module in ``dsrepro.repro.figures``) and
the :class:`Claim` records its rules produce, plus the steps every figure shares (build its tables from cached
artefacts, save them as CSVs, draw it, read the CSVs back).

A figure has one or more panels, each a tidy table saved as ``<panel>.csv``; its plot draws all of them into one
Figure saved as ``<name>.png`` / ``.pdf``. Its claims are computed from the tables alone (so the report can judge
a profile from its CSVs), each with the rule that decides its verdict written beside it.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from dsrepro.repro import artefacts as ex
from dsrepro.repro import evaluations as ev
from dsrepro.repro import stats
from dsrepro.repro.profiles import Profile
from dsrepro.runs import atomic_path

__all__ = ["NOT_RUN", "ClaimDef", "Claim", "stats_row", "judge", "FigureSpec", "save_tables", "load_tables", "draw",
           "make",
           "records", "table", "distilled", "wide"]

NOT_RUN = "not run at this profile"


@dataclasses.dataclass(frozen=True)
class ClaimDef:
  """A paper claim as a measurement rule, written before the runs it judges: ``quantity`` is estimated per cell
  (task x decoding, ...) with a 95% bootstrap interval (stats.py) into the figure's ``<name>_stats`` table; a
  cell is reproduced when its interval lies on the paper's side of ``threshold`` (``direction`` +1: above),
  contradicted when it lies on the other side, else inconclusive; the claim combines its cells (``stats.combine``).
  ``kind="check"``: not a paper claim but a precondition the report must show (e.g. SD pays at all)."""
  id: str
  figure: str
  claim: str
  paper: str
  quantity: str
  threshold: float = 0.0
  direction: int = +1
  kind: str = "claim"
  interval: str = "95% interval (bootstrap over seeds x prompts)"  # how the quantity's uncertainty is measured

  @property
  def rule(self) -> str:
    side = ">" if self.direction > 0 else "<"
    other = "<" if self.direction > 0 else ">"
    return (f"{self.quantity}, {self.interval}; per cell: reproduced if the interval is {side} {self.threshold:g}, "
            f"contradicted if {other} {self.threshold:g}, else inconclusive; claim: reproduced if every cell is, "
            "contradicted if any is")


@dataclasses.dataclass(frozen=True)
class Claim:
  """One claim judged on our tables: the paper's number, ours (estimate [95% interval] per cell), the verdict
  and the rule behind it."""
  figure: str
  claim: str
  paper: str
  rule: str
  ours: str = NOT_RUN
  verdict: str = NOT_RUN
  id: str = ""
  kind: str = "claim"


def stats_row(claim: ClaimDef, cell: str, iv: stats.Interval, n_seeds: int, n_prompts: int, **extra) -> dict:
  """One row of a figure's ``<name>_stats`` table: the claim's quantity in one cell, with its interval."""
  return dict(claim=claim.id, cell=cell, estimate=iv.estimate, lo=iv.lo, hi=iv.hi,
              verdict=stats.verdict(iv.lo, iv.hi, claim.threshold, claim.direction), n_seeds=n_seeds,
              n_prompts=n_prompts, **extra)


def judge(claim: ClaimDef, stats_df: pd.DataFrame | None) -> Claim:
  """The claim judged from the stats table's rows for it (NOT_RUN without rows)."""
  base = Claim(claim.figure, claim.claim, claim.paper, claim.rule, id=claim.id, kind=claim.kind)
  rows = None if stats_df is None or stats_df.empty else stats_df[stats_df.claim == claim.id]
  if rows is None or rows.empty:
    return base
  verdicts = [stats.verdict(r.lo, r.hi, claim.threshold, claim.direction) for r in rows.itertuples()]
  ours = "; ".join(f"{r.cell}: {r.estimate:.3g} [{r.lo:.3g}, {r.hi:.3g}]" for r in rows.itertuples())
  n = f" (seeds {int(rows.n_seeds.max())}, prompts {int(rows.n_prompts.max())})"
  return dataclasses.replace(base, ours=ours + n, verdict=stats.combine(verdicts))


Tables = dict  # panel name -> DataFrame (or None when its CSV is missing)


@dataclasses.dataclass(frozen=True)
class FigureSpec:
  """A paper figure or table. ``build(profile, root) -> {panel: DataFrame}`` trains / loads what it needs;
  ``plot(tables) -> matplotlib Figure``; ``claims``: its ClaimDefs, judged from the ``<name>_stats`` panel that
  ``build`` returns with the display panels; ``key_numbers(tables) -> DataFrame | [DataFrame]``, the short
  table(s) the report shows."""
  name: str
  title: str
  paper: str            # where it is in the paper, e.g. "DistillSpec (arXiv 2310.08461), Fig. 2"
  notebook: str         # notebooks/<notebook>.py / .ipynb
  panels: tuple[str, ...]
  build: Callable[[Profile, object], Tables]
  plot: Callable[[Tables], object]
  claims: tuple[ClaimDef, ...]
  key_numbers: Callable[[Tables], pd.DataFrame]
  summary: Callable[[Tables], str] | None = None  # a sentence for the top of the report, if any

  @property
  def stats_panel(self) -> str:
    return f"{self.name}_stats"

  @property
  def all_panels(self) -> tuple[str, ...]:
    """The CSVs the figure writes: its display panels, then its claims' stats table (if it has claims)."""
    return self.panels + ((self.stats_panel,) if self.claims else ())

  def judge(self, tables: Tables) -> list[Claim]:
    """Every claim of the figure, judged on its stats table (NOT_RUN when missing)."""
    return [judge(c, tables.get(self.stats_panel)) for c in self.claims]


def save_tables(spec: FigureSpec, tables: Tables, out_dir) -> list[Path]:
  """One CSV per panel given in ``tables`` (atomic); per-example list columns are left out."""
  out, paths = Path(out_dir), []
  out.mkdir(parents=True, exist_ok=True)
  for panel in spec.all_panels:
    if tables.get(panel) is None:
      continue
    df, path = tables[panel], out / f"{panel}.csv"
    with atomic_path(path) as tmp:
      df.drop(columns=[c for c in df.columns if c.endswith("_per_example")], errors="ignore").to_csv(tmp, index=False)
    paths.append(path)
  return paths


def load_tables(spec: FigureSpec, out_dir) -> Tables:
  """The panels' CSVs in ``out_dir``; a missing CSV is None."""
  out = Path(out_dir)
  return {panel: pd.read_csv(out / f"{panel}.csv") if (out / f"{panel}.csv").exists() else None
          for panel in spec.all_panels}


def draw(spec: FigureSpec, tables: Tables, out_dir) -> list[Path]:
  """``spec.plot(tables)`` saved as ``<out_dir>/<name>.png`` and ``.pdf``."""
  from dsrepro.repro import plotting
  return plotting.save(spec.plot(tables), out_dir, spec.name)


def make(spec: FigureSpec, p: Profile, root=None, out_dir=None) -> Tables:
  """Build the figure's tables (training what is missing); with ``out_dir`` also save the CSVs and the plot."""
  tables = spec.build(p, root)
  if out_dir is not None:
    save_tables(spec, tables, out_dir)
    draw(spec, tables, out_dir)
  return tables


# ------------------------------------------------------------------------------------------------ shared builders


def records(p: Profile, task: str, draft: ex.Trained, label: str, root=None, **kw) -> list[dict]:
  """SD records of the task's SFT target with ``draft`` as dicts, each tagged ``model=label``."""
  return [{**dataclasses.asdict(r), "model": label}
          for r in ev.sd_records(p, task, ex.target(p, task, root), draft, root, **kw)]


def table(rows: list[dict], columns: list[str] | None = None) -> pd.DataFrame:
  """Rows as a DataFrame (only ``columns``, in that order, when given)."""
  df = pd.DataFrame(rows)
  return df if columns is None or df.empty else df[columns]


def distilled(p: Profile, task: str, name: str, root=None) -> list[ex.Trained]:
  """The drafts distilled with Table 1's recipe ``name``, one per KD seed (``artefacts.recipe_model``)."""
  return [ex.recipe_model(p, task, name, s, root) for s in ex.kd_seeds(p)]


ARM_FIELDS = ("tokens", "calls", "accepted", "drafted", "alpha_tf")  # and "ll_sum", "ll_n", "score" with quality
TAU = stats.ratio_of_sums("tokens", "calls")          # block efficiency: emitted tokens / target calls
ALPHA = stats.ratio_of_sums("accepted", "drafted")    # empirical acceptance: accepted / drafted tokens
WALL = ("plain_s", "plain_tokens", "sd_s", "sd_tokens")


def arm(recs: list[dict], fields=ARM_FIELDS) -> stats.Arm:
  """The per-seed SD records of one draft (same prompts, same decoding and gamma) as a bootstrap Arm."""
  return stats.Arm.of(**{f: [r[f"{f}_per_example"] for r in recs] for f in fields})


def wall_speedup(fields: dict) -> float:
  """Measured speedup: (plain seconds / plain tokens) / (SD seconds / SD tokens)."""
  return float((fields["plain_s"].sum() / fields["plain_tokens"].sum()) / (fields["sd_s"].sum()
                                                                           / fields["sd_tokens"].sum()))


def seeded_records(p: Profile, task: str, drafts: list[ex.Trained], label: str, root=None, **kw) -> dict:
  """{(decoding, gamma): [record per seed]} of ``drafts`` (one per seed) with the task's SFT target."""
  out = {}
  for d in drafts:
    for r in records(p, task, d, label, root, **kw):
      out.setdefault((r["decoding"], r["gamma"]), []).append(r)
  return out


def summary(recs: list[dict], label: str, seed: int = 0) -> dict:
  """A display row of one draft x decoding x gamma: tau and alpha_hat with 95% intervals over seeds x prompts,
  the seed-pooled point estimates of the other record columns."""
  a = arm(recs)
  tau, alpha = stats.bootstrap(lambda f: TAU(f[label]), {label: a}, seed=seed), \
      stats.bootstrap(lambda f: ALPHA(f[label]), {label: a}, seed=seed)
  r = recs[0]
  return dict(task=r["task"], model=label, decoding=r["decoding"], gamma=r["gamma"], alpha_hat=alpha.estimate,
              alpha_lo=alpha.lo, alpha_hi=alpha.hi, tau=tau.estimate, tau_lo=tau.lo, tau_hi=tau.hi,
              alpha_tf=float(np.nanmean([x["alpha_tf"] for x in recs])), n_seeds=len(recs), n_prompts=a.n_prompts)


def wide(df: pd.DataFrame, index, column: str, value: str) -> pd.DataFrame:
  """``value`` pivoted to one column per distinct ``column`` (a flat frame, ``index`` as columns)."""
  return df.pivot_table(index=index, columns=column, values=value).reset_index().rename_axis(columns=None)
