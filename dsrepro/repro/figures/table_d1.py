"""DistillSpec (arXiv 2310.08461) Table D.1: acceptance rate alpha, block efficiency tau, the relative latency c
and the speedups of speculative decoding with the SFT draft and the DistillSpec (on-policy GKD) draft, for every
task x gamma x decoding.

Speedups: ``speedup_c`` = tau / (c gamma + 1), the paper's model, with c measured here; ``speedup_pred`` = tau
t_target / (gamma t_draft + t_verify) from measured call latencies; ``speedup_wall`` = measured batch-1 wall time
of target-only decoding / SD.
"""
from __future__ import annotations

from dsrepro.kd.recipes import DISTILLSPEC, SFT
from dsrepro.repro import artefacts as ex
from dsrepro.repro import figure, plotting
from dsrepro.repro.profiles import Profile

NAME = "table_d1"
COLUMNS = ["task", "model", "decoding", "gamma", "alpha_hat", "alpha_tf", "tau", "c", "speedup_c", "speedup_pred",
           "speedup_wall"]


def build(p: Profile, root=None) -> dict:
  rows = []
  for task in p.tasks:
    rows += figure.records(p, task, ex.sft_draft(p, task, root), SFT, root, wall_time=True)
    rows += figure.records(p, task, figure.distilled(p, task, DISTILLSPEC, root), "DistillSpec", root,
                           wall_time=True)
  return {NAME: figure.table(rows, COLUMNS)}


def _short(df):
  return df[[c for c in ("task", "model", "decoding", "gamma", "alpha_hat", "tau", "c", "speedup_c", "speedup_wall")
             if c in df]]


def plot(tables: dict):
  df = tables[NAME]
  cols = _short(df)
  return plotting.table_figure(cols.sort_values([c for c in ("task", "decoding", "gamma", "model") if c in cols]),
                               "Table D.1: acceptance alpha, block efficiency tau, relative latency c and speedups "
                               "(x over target-only)")


def claims(tables: dict) -> list:
  return []


def key_numbers(tables: dict):
  return _short(tables[NAME])


def summary(tables: dict) -> str:
  """Whether SD is faster than the target alone at this profile (from c and the speedups)."""
  df = tables[NAME]
  if df is None or df.empty or not {"c", "speedup_c", "speedup_wall"} <= set(df.columns):
    return ""
  c, sw = df.c.astype(float), df.speedup_wall.astype(float)
  faster = "faster" if sw.min() > 1 else "not faster" if sw.max() < 1 else "sometimes faster"
  return (f"At this profile the cost ratio c (draft / target forward latency, batch 1) is "
          f"{c.min():.2f}..{c.max():.2f} and SD is {faster} than target-only decoding: measured wall-time "
          f"speedup {sw.min():.2f}x..{sw.max():.2f}x, model-based tau / (c gamma + 1) "
          f"{df.speedup_c.min():.2f}x..{df.speedup_c.max():.2f}x. The speedup claims compare drafts at the "
          "same c, so they still test what distillation changes: alpha and tau.")


SPEC = figure.FigureSpec(
    name=NAME, title="Table D.1: acceptance, block efficiency and speedup",
    paper="DistillSpec (arXiv 2310.08461), Table D.1", notebook="table_d1", panels=(NAME,), build=build,
    plot=plot, claims=claims, key_numbers=key_numbers, summary=summary)
