"""DistillSpec (arXiv 2310.08461) Fig. 2: block efficiency tau of drafts distilled with each KD algorithm of
Table 1 (SupervisedKD, SeqKD, ImitKD, f-Distill, on-policy GKD) against the SFT draft, per task (T = 1 and the
largest gamma, 7, as in the paper)."""
from __future__ import annotations

import numpy as np

from dsrepro.kd.recipes import ALGORITHMS, SFT, SUPERVISED, model_generated
from dsrepro.repro import artefacts as ex
from dsrepro.repro import figure, plotting, stats
from dsrepro.repro.profiles import Profile

NAME = "fig2"
GENERATED = tuple(a for a in ALGORITHMS if model_generated(a))
GEN_DATA = figure.ClaimDef(
    "fig2.generated_data", NAME, "Model-generated data beats fixed data",
    "~20% more speedup than fixed-data KD (Sec. 5.1)",
    f"gain = mean over {'/'.join(GENERATED)} (trained on generated data only) of tau / tau({SUPERVISED}, fixed "
    "ground truth) - 1, per task")
SUP_LOWEST = figure.ClaimDef(
    "fig2.supervised_lowest", NAME, "SupervisedKD ranks lowest among the KD algorithms",
    "lowest tau of the 5 algorithms (Fig. 2)",
    f"gap = min over the other algorithms of tau / tau({SUPERVISED}) - 1 (> 0: every other algorithm beats it), "
    "per task")


def build(p: Profile, root=None, gamma: int | None = None, temperature: float = 1.0) -> dict:
  gamma = gamma or max(p.gammas)
  kw = dict(gammas=(gamma,), temperatures=(temperature,))
  rows, stat_rows = [], []
  for task in p.tasks:
    arms = {}
    for label, ds in ((SFT, [ex.sft_draft(p, task, root)]), *((a, figure.distilled(p, task, a, root))
                                                              for a in ALGORITHMS)):
      recs = next(iter(figure.seeded_records(p, task, ds, label, root, **kw).values()))
      rows.append(figure.summary(recs, label, p.seed))
      arms[label] = figure.arm(recs)
    tau = figure.TAU
    algos = {a: arms[a] for a in ALGORITHMS}
    gen = stats.bootstrap(lambda f: np.mean([tau(f[a]) for a in GENERATED]) / tau(f[SUPERVISED]) - 1, algos,
                          seed=p.seed)
    gap = stats.bootstrap(lambda f: min(tau(f[a]) for a in ALGORITHMS if a != SUPERVISED) / tau(f[SUPERVISED]) - 1,
                          algos, seed=p.seed)
    n = (arms[SUPERVISED].n_seeds, arms[SUPERVISED].n_prompts)
    stat_rows += [figure.stats_row(GEN_DATA, task, gen, *n), figure.stats_row(SUP_LOWEST, task, gap, *n)]
  df = figure.table(rows)
  base = df[df.model == SFT].set_index("task")["tau"]
  df["tau_gain_pct"] = [(r.tau / base[r.task] - 1) * 100 for r in df.itertuples()]
  return {NAME: df, f"{NAME}_stats": figure.table(stat_rows)}


def plot(tables: dict):
  """One bar per algorithm per task; the SFT draft is a dashed line; tau gain over SFT annotated."""
  df = tables[NAME]
  if df.empty:
    return plotting.empty("Fig. 2")
  import matplotlib.pyplot as plt
  algos = [m for m in plotting.order(df.model) if m != SFT]
  fig, ax = plt.subplots(figsize=(max(6.0, 2.5 * df.task.nunique()), 4.2), layout="constrained")
  bars = plotting.bars(ax, df, "task", "model", "tau", algos, err=("tau_lo", "tau_hi"))
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
  ax.set_ylim(0, 1.3 * np.nanmax(df.get("tau_hi", df.tau).to_numpy(float)))
  ax.legend(fontsize=7, ncol=3, loc="upper left")
  ax.set_title(f"Fig. 2: KD algorithms, {df.decoding.iloc[0]}, gamma = {int(df.gamma.iloc[0])} "
               "(95% intervals; annotation: tau gain over SFT)")
  return fig


def key_numbers(tables: dict):
  return figure.wide(tables[NAME], ["task", "decoding", "gamma"], "model", "tau")


SPEC = figure.FigureSpec(
    name=NAME, title="Fig. 2: KD algorithms", paper="DistillSpec (arXiv 2310.08461), Fig. 2",
    notebook="fig2_kd_algorithms", panels=(NAME,), build=build, plot=plot, claims=(GEN_DATA, SUP_LOWEST),
    key_numbers=key_numbers)
