"""DistillSpec (arXiv 2310.08461) Fig. 4: the improvement of tau over the SFT draft for every cell of the recipe
grid, training data source (fixed ground truth, student, teacher, teacher + student) x divergence (FKL, JSD, RKL,
TVD), greedy and T = 1, at the middle gamma. The paper's best cells depend on task and decoding."""
from __future__ import annotations

import numpy as np
import pandas as pd

from dsrepro.kd.divergences import DIVERGENCES
from dsrepro.kd.recipes import GRID_DATA, SFT, grid_cells, grid_config
from dsrepro.repro import artefacts as ex
from dsrepro.repro import figure, plotting
from dsrepro.repro.profiles import Profile

NAME = "fig4"
# The paper's best cell per (task, decoding): data source, divergence.
PAPER_BEST = (("xsum", "greedy", "teacher+student", "jsd"), ("gsm8k", "greedy", "student", "fkl"),
              ("gsm8k", "T=1", "teacher", "rkl"))


def build(p: Profile, root=None) -> dict:
  g = figure.mid_gamma(p)
  rows = []
  for task in p.fig4_tasks:
    base = {r["decoding"]: r["tau"] for r in figure.records(p, task, ex.sft_draft(p, task, root), SFT, root,
                                                            gammas=(g,))}
    for data, div in grid_cells():
      m = ex.kd_model(p, task, f"grid-{data}-{div}", grid_config(data, div), root=root, steps=p.kd_grid_steps)
      for r in figure.records(p, task, m, f"{data}/{div}", root, gammas=(g,)):
        rows.append(dict(task=task, data=data, divergence=div, decoding=r["decoding"], gamma=g, tau=r["tau"],
                         tau_sft=base[r["decoding"]], improvement_pct=(r["tau"] / base[r["decoding"]] - 1) * 100))
  return {NAME: pd.DataFrame(rows)}


def plot(tables: dict):
  """One heatmap per task x decoding (diverging colormap centred at 0, cells annotated, best cell boxed)."""
  df = tables[NAME]
  if df.empty:
    return plotting.empty("Fig. 4")
  import matplotlib.pyplot as plt
  from matplotlib.colors import TwoSlopeNorm
  panels = [(t, d) for t in dict.fromkeys(df.task) for d in plotting.decodings(df[df.task == t])]
  fig, axes = plotting.grid(len(panels), w=4.6, h=3.8, ncols=min(len(panels), 2))
  lim = float(np.nanmax(np.abs(df.improvement_pct))) if df.improvement_pct.notna().any() else 1.0
  norm = TwoSlopeNorm(0.0, -(lim or 1.0), lim or 1.0)
  data_order, div_order = plotting.order(df.data, GRID_DATA), plotting.order(df.divergence, DIVERGENCES)
  im = None
  for ax, (task, dec) in zip(axes, panels):
    sub = df[(df.task == task) & (df.decoding == dec)]
    mat = sub.pivot_table(index="data", columns="divergence", values="improvement_pct").reindex(
        index=data_order, columns=div_order)
    im = ax.imshow(mat.values, cmap="RdBu", norm=norm, aspect="auto")
    for i in range(mat.shape[0]):
      for j in range(mat.shape[1]):
        v = mat.values[i, j]
        ax.text(j, i, "n/a" if np.isnan(v) else f"{v:+.1f}", ha="center", va="center", fontsize=8,
                color="white" if np.isfinite(v) and abs(v) > 0.6 * lim else "black")
    if np.isfinite(mat.values).any():
      i, j = np.unravel_index(np.nanargmax(mat.values), mat.shape)
      ax.add_patch(plt.Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, ec="k", lw=2))
    ax.set_xticks(range(len(div_order)), [d.upper() for d in div_order])
    ax.set_yticks(range(len(data_order)), data_order)
    ax.set_xlabel("divergence")
    ax.set_ylabel("training data source")
    if len(panels) > 1:
      ax.label_outer()
    ax.set_title(f"{task}, {dec}, gamma = {int(sub.gamma.iloc[0])}")
  fig.colorbar(im, ax=axes, label="tau improvement over SFT draft (%)", shrink=0.8)
  fig.suptitle("Fig. 4: data source x divergence (box: best cell)")
  return fig


def claim_best_recipe(tables: dict, task: str, decoding: str, data: str, div: str) -> figure.Claim:
  c = figure.Claim(NAME, f"Best recipe on {task}, {decoding}", f"{data} data + {div.upper()}",
                   "cells ranked by tau improvement over SFT; yes: the paper's cell is our best; partly: in our top "
                   "3; no: otherwise")
  df = tables[NAME]
  sub = None if df is None else df[(df.task == task) & (df.decoding == decoding)]
  if sub is None or sub.empty:
    return c
  sub = sub.sort_values("improvement_pct", ascending=False).reset_index(drop=True)
  best = sub.iloc[0]
  hit = sub.index[(sub.data == data) & (sub.divergence == div)]
  rank = int(hit[0]) + 1 if len(hit) else None
  paper = f"paper's cell rank {rank}/{len(sub)} ({sub.improvement_pct[rank - 1]:+.1f}%)" if rank else \
      "paper's cell not run"
  return c.judged(f"best {best.data}/{best.divergence.upper()} ({best.improvement_pct:+.1f}%); {paper}",
                  "no" if rank is None else "yes" if rank == 1 else "partly" if rank <= 3 else "no")


def claims(tables: dict) -> list:
  return [claim_best_recipe(tables, *cell) for cell in PAPER_BEST]


def key_numbers(tables: dict):
  rows = []
  for (task, dec), g in tables[NAME].groupby(["task", "decoding"]):
    g = g.sort_values("improvement_pct")
    rows.append(dict(task=task, decoding=dec, best=f"{g.data.iloc[-1]}/{g.divergence.iloc[-1]}",
                     best_pct=g.improvement_pct.iloc[-1], worst=f"{g.data.iloc[0]}/{g.divergence.iloc[0]}",
                     worst_pct=g.improvement_pct.iloc[0], tau_sft=g.tau_sft.iloc[0]))
  return pd.DataFrame(rows)


SPEC = figure.FigureSpec(
    name=NAME, title="Fig. 4: data source x divergence", paper="DistillSpec (arXiv 2310.08461), Fig. 4",
    notebook="fig4_divergence_grid", panels=(NAME,), build=build, plot=plot, claims=claims, key_numbers=key_numbers)
