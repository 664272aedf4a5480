"""DistillSpec (arXiv 2310.08461) Fig. 1: the speedup of speculative decoding with the distilled (DistillSpec,
on-policy GKD) draft vs the SFT draft, per task and decoding, each at its best gamma (by tau / (c gamma + 1)).
Built from Table D.1's records."""
from __future__ import annotations

import numpy as np

from dsrepro.kd.recipes import SFT
from dsrepro.repro import figure, plotting
from dsrepro.repro.figures import table_d1
from dsrepro.repro.profiles import Profile

NAME = "fig1"


def build(p: Profile, root=None) -> dict:
  d1 = table_d1.build(p, root)[table_d1.NAME]
  best = d1.loc[d1.groupby(["task", "decoding", "model"])["speedup_c"].idxmax()]
  wide = best.pivot_table(index=["task", "decoding"], columns="model", values=["speedup_c", "speedup_wall", "tau"])
  out = best.reset_index(drop=True)
  gain = (wide["speedup_c"]["DistillSpec"] / wide["speedup_c"][SFT] - 1) * 100
  out["improvement_pct"] = [gain.loc[(r.task, r.decoding)] for r in out.itertuples()]
  return {NAME: out}


def plot(tables: dict):
  """Bars = tau / (c gamma + 1), diamonds = measured batch-1 wall-time speedup, improvement % annotated; one panel
  per decoding."""
  df = tables[NAME]
  if df.empty:
    return plotting.empty("Fig. 1")
  decs = plotting.decodings(df)
  fig, axes = plotting.grid(len(decs), w=max(4.5, 2.0 * df.task.nunique()), h=4.0)
  for ax, dec in zip(axes, decs):
    sub = df[df.decoding == dec]
    bars = plotting.bars(ax, sub, "task", "model", "speedup_c", plotting.order(sub.model, (SFT, "DistillSpec")),
                         labels={SFT: "SFT draft", "DistillSpec": "DistillSpec draft"})
    if plotting.has(sub, "speedup_wall"):
      for (task, model), r in bars.items():
        row = sub[(sub.task == task) & (sub.model == model)]
        ax.plot(r.get_x() + r.get_width() / 2, row.speedup_wall.iloc[0], "kD", ms=4,
                label="measured wall time" if (task, model) == next(iter(bars)) else None)
    for task in dict.fromkeys(sub.task):
      r = bars.get((task, "DistillSpec"))
      imp = sub[sub.task == task].improvement_pct.iloc[0]
      if r is not None and np.isfinite(imp):
        plotting.annotate(ax, r, f"{imp:+.0f}%", fontweight="bold")
    ax.axhline(1.0, color="grey", lw=0.8, ls=":")
    ax.set_ylim(0, 1.25 * np.nanmax([r.get_height() for r in bars.values()] + [1.0]))
    ax.set_title(dec)
    ax.set_xlabel("task")
    ax.set_ylabel("speedup over target-only decoding (x)\nbars: tau / (c gamma + 1)")
    ax.legend(fontsize=7, loc="upper left", ncol=3)
  fig.suptitle("Fig. 1: DistillSpec vs SFT draft, speedup at the best gamma (annotation: improvement)")
  return fig


def claims(tables: dict) -> list:
  c = figure.Claim(NAME, "Distilled draft speeds up SD over the SFT draft", "10-45% across 5 datasets, greedy and T=1",
                   "yes: every task x decoding improves by >= 10%; partly: at least half improve (> 0%); no: otherwise")
  df = tables[NAME]
  if df is None or df.empty:
    return [c]
  imp = df.drop_duplicates(["task", "decoding"]).improvement_pct.astype(float)
  return [c.judged(f"{imp.min():+.1f}% .. {imp.max():+.1f}% (median {imp.median():+.1f}%) over {len(imp)} "
                   "task x decoding",
                   "yes" if imp.min() >= 10 else "partly" if (imp > 0).mean() >= 0.5 else "no")]


def key_numbers(tables: dict):
  df = tables[NAME]
  return figure.wide(df, ["task", "decoding"], "model", "speedup_c").merge(df.drop_duplicates(["task", "decoding"])[["task", "decoding", "improvement_pct"]])


SPEC = figure.FigureSpec(
    name=NAME, title="Fig. 1: DistillSpec vs SFT draft speedup", paper="DistillSpec (arXiv 2310.08461), Fig. 1",
    notebook="fig1_speedup", panels=(NAME,), build=build, plot=plot, claims=claims, key_numbers=key_numbers)
