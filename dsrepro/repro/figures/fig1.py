"""DistillSpec (arXiv 2310.08461) Fig. 1: the speedup of speculative decoding with the distilled (DistillSpec,
on-policy GKD) draft vs the SFT draft, per task and decoding, each draft at its own best gamma (by the point
estimate of tau / (c gamma + 1)). Built from Table D.1's records; intervals over KD seeds x prompts."""
from __future__ import annotations

import numpy as np

from dsrepro.kd.recipes import SFT
from dsrepro.repro import figure, plotting, stats
from dsrepro.repro.figures import table_d1
from dsrepro.repro.profiles import Profile

NAME = "fig1"
FASTER = figure.ClaimDef(
    "fig1.distilled_faster", NAME, "Distilled draft speeds up SD over the SFT draft",
    "10-46% across 5 datasets, greedy and T=1 (Sec. 5.1; the abstract says 10-45%)",
    "improvement = [tau_D / (c gamma_D + 1)] / [tau_SFT / (c gamma_S + 1)] - 1, each draft at its best gamma, "
    "per task x decoding")


def build(p: Profile, root=None) -> dict:
  d1 = table_d1.build(p, root, wall_rounds=1)[table_d1.NAME]  # its claim does not use the clock
  rows, stat_rows = [], []
  for task in p.tasks:
    recs = {}
    for label, ds in table_d1.drafts(p, task, root).items():
      for key, rs in figure.seeded_records(p, task, ds, label, root).items():
        recs[(label, *key)] = rs
    sub = d1[d1.task == task]
    for dec in dict.fromkeys(sub.decoding):
      best = {m: sub[(sub.decoding == dec) & (sub.model == m)].sort_values("speedup_c").iloc[-1]
              for m in table_d1.DRAFTS}
      arms = {m: figure.arm(recs[(m, dec, int(b.gamma))]) for m, b in best.items()}
      cost = {m: 1 / (b.c * b.gamma + 1) for m, b in best.items()}
      gain = stats.bootstrap(lambda f: (figure.TAU(f["DistillSpec"]) * cost["DistillSpec"])
                             / (figure.TAU(f[SFT]) * cost[SFT]) - 1, arms, seed=p.seed)
      for m, b in best.items():
        rows.append({**b.to_dict(), "improvement_pct": 100 * gain.estimate, "improvement_lo": 100 * gain.lo,
                     "improvement_hi": 100 * gain.hi})
      stat_rows.append(figure.stats_row(FASTER, f"{task} {dec}", gain, arms["DistillSpec"].n_seeds,
                                        arms["DistillSpec"].n_prompts))
  return {NAME: figure.table(rows), f"{NAME}_stats": figure.table(stat_rows)}


def plot(tables: dict):
  """Bars = tau / (c gamma + 1) with 95% intervals, diamonds = measured batch-1 wall-time speedup, the
  improvement annotated; one panel per decoding."""
  df = tables[NAME]
  if df.empty:
    return plotting.empty("Fig. 1")
  decs = plotting.decodings(df)
  fig, axes = plotting.grid(len(decs), w=max(4.5, 2.0 * df.task.nunique()), h=4.0)
  for ax, dec in zip(axes, decs):
    sub = df[df.decoding == dec]
    bars = plotting.bars(ax, sub, "task", "model", "speedup_c", plotting.order(sub.model, table_d1.DRAFTS),
                         labels={SFT: "SFT draft", "DistillSpec": "DistillSpec draft"}, err=("speedup_c_lo",
                                                                                             "speedup_c_hi"))
    if plotting.has(sub, "speedup_wall"):
      for (task, model), r in bars.items():
        row = sub[(sub.task == task) & (sub.model == model)]
        ax.plot(r.get_x() + r.get_width() / 2, row.speedup_wall.iloc[0], "kD", ms=4,
                label="measured wall time" if (task, model) == next(iter(bars)) else None)
    for task in dict.fromkeys(sub.task):
      r = bars.get((task, "DistillSpec"))
      row = sub[sub.task == task].iloc[0]
      if r is not None and np.isfinite(row.improvement_pct):
        plotting.annotate(ax, r, f"{row.improvement_pct:+.0f}% [{row.improvement_lo:+.0f}, "
                          f"{row.improvement_hi:+.0f}]", fontweight="bold")
    ax.axhline(1.0, color="grey", lw=0.8, ls=":")
    top = [v for v in sub.get("speedup_c_hi", sub.speedup_c).tolist() + sub.speedup_wall.tolist() if np.isfinite(v)]
    ax.set_ylim(0, 1.3 * max(top + [1.0]))
    ax.set_title(dec)
    ax.set_xlabel("task")
    ax.set_ylabel("speedup over target-only decoding (x)\nbars: tau / (c gamma + 1), 95% interval")
    ax.legend(fontsize=7, loc="upper left", ncol=3)
  fig.suptitle("Fig. 1: DistillSpec vs SFT draft, speedup at the best gamma (annotation: improvement, 95% interval)")
  return fig


def key_numbers(tables: dict):
  df = tables[NAME]
  return figure.wide(df, ["task", "decoding"], "model", "speedup_c").merge(
      df.drop_duplicates(["task", "decoding"])[["task", "decoding", "improvement_pct", "improvement_lo",
                                                "improvement_hi"]])


SPEC = figure.FigureSpec(
    name=NAME, title="Fig. 1: DistillSpec vs SFT draft speedup", paper="DistillSpec (arXiv 2310.08461), Fig. 1",
    notebook="fig1_speedup", panels=(NAME,), build=build, plot=plot, claims=(FASTER,), key_numbers=key_numbers)
