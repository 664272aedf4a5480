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

import pandas as pd

from dsrepro.repro import artefacts as ex
from dsrepro.repro.profiles import Profile
from dsrepro.runs import atomic_path

__all__ = ["NOT_RUN", "Claim", "FigureSpec", "save_tables", "load_tables", "draw", "make", "mid_gamma",
           "records", "table", "distilled", "wide"]

NOT_RUN = "not run at this profile"


@dataclasses.dataclass(frozen=True)
class Claim:
  """One claim of a paper, judged on our tables: the paper's number, ours, the verdict and the rule behind it."""
  figure: str
  claim: str
  paper: str
  rule: str
  ours: str = NOT_RUN
  verdict: str = NOT_RUN

  def judged(self, ours: str, verdict: str) -> "Claim":
    return dataclasses.replace(self, ours=ours, verdict=verdict)


Tables = dict  # panel name -> DataFrame (or None when its CSV is missing)


@dataclasses.dataclass(frozen=True)
class FigureSpec:
  """A paper figure or table. ``build(profile, root) -> {panel: DataFrame}`` trains / loads what it needs;
  ``plot(tables) -> matplotlib Figure``; ``claims(tables) -> [Claim]`` (every claim, judged or NOT_RUN);
  ``key_numbers(tables) -> DataFrame``, the short table the report shows."""
  name: str
  title: str
  paper: str            # where it is in the paper, e.g. "DistillSpec (arXiv 2310.08461), Fig. 2"
  notebook: str         # notebooks/<notebook>.py / .ipynb
  panels: tuple[str, ...]
  build: Callable[[Profile, object], Tables]
  plot: Callable[[Tables], object]
  claims: Callable[[Tables], list[Claim]]
  key_numbers: Callable[[Tables], pd.DataFrame]
  summary: Callable[[Tables], str] | None = None  # a sentence for the top of the report, if any


def save_tables(spec: FigureSpec, tables: Tables, out_dir) -> list[Path]:
  """One CSV per panel (atomic); per-example list columns are left out."""
  out, paths = Path(out_dir), []
  out.mkdir(parents=True, exist_ok=True)
  for panel in spec.panels:
    df, path = tables[panel], out / f"{panel}.csv"
    with atomic_path(path) as tmp:
      df.drop(columns=[c for c in df.columns if c.endswith("_per_example")], errors="ignore").to_csv(tmp, index=False)
    paths.append(path)
  return paths


def load_tables(spec: FigureSpec, out_dir) -> Tables:
  """The panels' CSVs in ``out_dir``; a missing CSV is None."""
  out = Path(out_dir)
  return {panel: pd.read_csv(out / f"{panel}.csv") if (out / f"{panel}.csv").exists() else None
          for panel in spec.panels}


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


def mid_gamma(p: Profile) -> int:
  """The middle block size of the profile (gamma = 5 of 3 / 5 / 7): the paper's default panel."""
  return p.gammas[len(p.gammas) // 2]


def records(p: Profile, task: str, draft: ex.Trained, label: str, root=None, **kw) -> list[dict]:
  """SD records of the task's SFT target with ``draft`` as dicts, each tagged ``model=label``."""
  return [{**dataclasses.asdict(r), "model": label}
          for r in ex.sd_records(p, task, ex.target(p, task, root), draft, root, **kw)]


def table(rows: list[dict], columns: list[str] | None = None) -> pd.DataFrame:
  """Rows as a DataFrame (only ``columns``, in that order, when given)."""
  df = pd.DataFrame(rows)
  return df if columns is None or df.empty else df[columns]


def distilled(p: Profile, task: str, name: str, root=None) -> ex.Trained:
  """The draft distilled with Table 1's recipe ``name`` (``kd.recipes.ALGORITHMS``), alignment tracked (Fig. 3a)."""
  from dsrepro.kd.recipes import ALGORITHMS
  return ex.kd_model(p, task, name, ALGORITHMS[name], root=root, track=True)


def wide(df: pd.DataFrame, index, column: str, value: str) -> pd.DataFrame:
  """``value`` pivoted to one column per distinct ``column`` (a flat frame, ``index`` as columns)."""
  return df.pivot_table(index=index, columns=column, values=value).reset_index().rename_axis(columns=None)
