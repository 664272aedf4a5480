"""AdaSPEC (arXiv 2510.19779) main table: the acceptance rate of AdaSPEC's selectively distilled draft vs
DistillSpec drafts (FKL on the same fixed data, as the authors compare, and on-policy GKD), per task, at the middle
gamma. Paper numbers: Pythia-31M -> Pythia-1.4B after 3 epochs (the authors' repository README)."""
from __future__ import annotations

import numpy as np

from dsrepro.kd.recipes import DISTILLSPEC, SFT, SUPERVISED
from dsrepro.repro import artefacts as ex
from dsrepro.repro import figure, plotting
from dsrepro.repro.profiles import Profile

NAME = "adaspec"
PANEL = "adaspec_table"
FKL_FIXED, GKD, ADASPEC = "DistillSpec (FKL, fixed data)", "DistillSpec (GKD, on-policy)", "AdaSPEC"


def build(p: Profile, root=None) -> dict:
  g = figure.mid_gamma(p)
  rows = []
  for task in p.adaspec_tasks:
    drafts = [(SFT, ex.sft_draft(p, task, root)), (FKL_FIXED, figure.distilled(p, task, SUPERVISED, root)),
              (GKD, figure.distilled(p, task, DISTILLSPEC, root)), (ADASPEC, ex.adaspec_model(p, task, root))]
    for label, m in drafts:
      for r in figure.records(p, task, m, label, root, gammas=(g,)):
        rows.append(dict(task=task, model=label, decoding=r["decoding"], gamma=g, alpha_hat=r["alpha_hat"],
                         alpha_tf=r["alpha_tf"], tau=r["tau"]))
  return {PANEL: figure.table(rows)}


def plot(tables: dict):
  """Acceptance rate (%) per task, grouped bars, one panel per decoding."""
  df = tables[PANEL]
  if df.empty:
    return plotting.empty("AdaSPEC vs DistillSpec")
  decs = plotting.decodings(df)
  fig, axes = plotting.grid(len(decs), w=max(5.0, 2.5 * df.task.nunique()), h=4.0)
  models = list(dict.fromkeys(df.model))
  for ax, dec in zip(axes, decs):
    sub = df[df.decoding == dec].assign(alpha_pct=lambda d: 100 * d.alpha_hat)
    bars = plotting.bars(ax, sub, "task", "model", "alpha_pct", models, labels={m: m for m in models})
    for r in bars.values():
      plotting.annotate(ax, r, f"{r.get_height():.1f}")
    ax.set_title(f"{dec}, gamma = {int(sub.gamma.iloc[0])}")
    ax.set_ylabel("token acceptance rate alpha (%)")
    ax.set_xlabel("task")
    ax.set_ylim(0, 1.35 * max(1.0, float(np.nanmax(sub.alpha_pct.to_numpy(float)))))
    ax.legend(fontsize=7, loc="upper left", ncol=2)
  fig.suptitle("AdaSPEC vs DistillSpec: acceptance rate of the draft (paper: AdaSPEC Table)")
  return fig


def claims(tables: dict) -> list:
  c = figure.Claim(PANEL, "AdaSPEC accepts more than DistillSpec",
                   "GSM8K 57.58 -> 61.02, Alpaca 44.34 -> 47.25, MBPP 46.88 -> 47.73, CNN/DM 73.05 -> 74.22, "
                   "XSum 47.24 -> 49.11 (%)",
                   "alpha of AdaSPEC vs DistillSpec with FKL on the same fixed data, per task x decoding; yes: "
                   "higher in all; partly: in at least half; no: otherwise")
  df = tables[PANEL]
  if df is None or df.empty:
    return [c]
  base = df[df.model == FKL_FIXED].set_index(["task", "decoding"]).alpha_hat
  ada = df[df.model == ADASPEC].set_index(["task", "decoding"]).alpha_hat
  keys = [k for k in ada.index if k in base.index]
  if not keys:
    return [c.judged("n/a (rows missing)", "n/a (rows missing)")]
  wins = [ada[k] > base[k] for k in keys]
  return [c.judged(", ".join(f"{k[0]} {k[1]} {100 * base[k]:.1f} -> {100 * ada[k]:.1f}" for k in keys),
                   "yes" if all(wins) else "partly" if np.mean(wins) >= 0.5 else "no")]


def key_numbers(tables: dict):
  df = tables[PANEL]
  return figure.wide(df.assign(alpha_pct=100 * df.alpha_hat), ["task", "decoding"], "model", "alpha_pct")


SPEC = figure.FigureSpec(
    name=NAME, title="AdaSPEC vs DistillSpec", paper="AdaSPEC (arXiv 2510.19779), Table 1",
    notebook="table_adaspec", panels=(PANEL,), build=build, plot=plot, claims=claims, key_numbers=key_numbers)
