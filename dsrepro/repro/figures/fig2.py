"""DistillSpec (arXiv 2310.08461) Fig. 2: block efficiency tau of drafts distilled with each KD algorithm of
Table 1 (SupervisedKD, SeqKD, ImitKD, f-Distill, on-policy GKD) against the SFT draft, per task (T = 1 and the
largest gamma, 7, as in the paper)."""
from __future__ import annotations

import numpy as np
import pandas as pd

from dsrepro.kd.recipes import ALGORITHMS, SFT, SUPERVISED, model_generated
from dsrepro.repro import artefacts as ex
from dsrepro.repro import figure, plotting
from dsrepro.repro.profiles import Profile

NAME = "fig2"


def build(p: Profile, root=None, gamma: int | None = None, temperature: float = 1.0) -> dict:
  gamma = gamma or max(p.gammas)
  kw = dict(gammas=(gamma,), temperatures=(temperature,))
  rows = []
  for task in p.tasks:
    rows += figure.records(p, task, ex.sft_draft(p, task, root), SFT, root, **kw)
    for name in ALGORITHMS:
      rows += figure.records(p, task, figure.distilled(p, task, name, root), name, root, **kw)
  df = figure.table(rows, ["task", "model", "decoding", "gamma", "alpha_hat", "tau", "alpha_tf"])
  base = df[df.model == SFT].set_index("task")["tau"]
  df["tau_gain_pct"] = [(r.tau / base[r.task] - 1) * 100 for r in df.itertuples()]
  return {NAME: df}


def plot(tables: dict):
  """One bar per algorithm per task; the SFT draft is a dashed line; tau gain over SFT annotated."""
  df = tables[NAME]
  if df.empty:
    return plotting.empty("Fig. 2")
  import matplotlib.pyplot as plt
  algos = [m for m in plotting.order(df.model) if m != SFT]
  fig, ax = plt.subplots(figsize=(max(6.0, 2.5 * df.task.nunique()), 4.2), layout="constrained")
  bars = plotting.bars(ax, df, "task", "model", "tau", algos)
  for i, task in enumerate(dict.fromkeys(df.task)):
    sft = df[(df.task == task) & (df.model == SFT)].tau
    if len(sft):
      ax.hlines(sft.iloc[0], i - 0.45, i + 0.45, colors="k", linestyles="--", label="SFT draft" if i == 0 else None)
    for a in algos:
      row = df[(df.task == task) & (df.model == a)]
      if (task, a) in bars and len(row) and "tau_gain_pct" in row:
        plotting.annotate(ax, bars[(task, a)], f"{row.tau_gain_pct.iloc[0]:+.0f}%")
  ax.set_xlabel("task")
  ax.set_ylabel("block efficiency tau (tokens / target call)")
  ax.set_ylim(0, 1.3 * np.nanmax(df.tau.to_numpy(float)))
  ax.legend(fontsize=7, ncol=3, loc="upper left")
  ax.set_title(f"Fig. 2: KD algorithms, {df.decoding.iloc[0]}, gamma = {int(df.gamma.iloc[0])} "
               "(annotation: tau gain over SFT)")
  return fig


def _tau(tables: dict):
  df = tables[NAME]
  return None if df is None or df.empty else df.pivot_table(index="task", columns="model", values="tau")


def claim_generated_data(tables: dict) -> figure.Claim:
  generated = [a for a in ALGORITHMS if model_generated(a)]
  c = figure.Claim(NAME, "Model-generated data beats fixed data", "~20% more speedup than fixed-data KD",
                   f"gain = mean tau of {'/'.join(generated)} (generated data only) / tau of supervised_kd (fixed "
                   "data) - 1, per task; yes: gain > 0 in every task and mean gain >= 10%; partly: mean gain > 0; "
                   "no: otherwise")
  tau = _tau(tables)
  if tau is None:
    return c
  gen = [a for a in generated if a in tau]
  if SUPERVISED not in tau or not gen:
    return c.judged("n/a (algorithms missing)", "n/a (algorithms missing)")
  gain = (tau[gen].mean(axis=1) / tau[SUPERVISED] - 1) * 100
  return c.judged(", ".join(f"{k} {v:+.1f}%" for k, v in gain.items()) + f" (mean {gain.mean():+.1f}%)",
                  "yes" if (gain > 0).all() and gain.mean() >= 10 else "partly" if gain.mean() > 0 else "no")


def claim_supervised_lowest(tables: dict) -> figure.Claim:
  c = figure.Claim(NAME, "SupervisedKD ranks lowest among the KD algorithms", "lowest tau of the 5 algorithms",
                   "position = number of KD algorithms with a strictly lower tau than supervised_kd (0 = lowest); "
                   "yes: 0 in every task; partly: <= 1 in at least half of the tasks; no: otherwise")
  tau = _tau(tables)
  if tau is None:
    return c
  algos = [a for a in ALGORITHMS if a in tau]
  if SUPERVISED not in algos:
    return c.judged("n/a (supervised_kd missing)", "n/a (supervised_kd missing)")
  pos = pd.Series({task: int((row[algos] < row[SUPERVISED]).sum()) for task, row in tau.iterrows()})
  return c.judged(", ".join(f"{k}: {v + 1} of {len(algos)} from the bottom" for k, v in pos.items()),
                  "yes" if (pos == 0).all() else "partly" if (pos <= 1).mean() >= 0.5 else "no")


def claims(tables: dict) -> list:
  return [claim_generated_data(tables), claim_supervised_lowest(tables)]


def key_numbers(tables: dict):
  return figure.wide(tables[NAME], ["task", "decoding", "gamma"], "model", "tau")


SPEC = figure.FigureSpec(
    name=NAME, title="Fig. 2: KD algorithms", paper="DistillSpec (arXiv 2310.08461), Fig. 2",
    notebook="fig2_kd_algorithms", panels=(NAME,), build=build, plot=plot, claims=claims, key_numbers=key_numbers)
