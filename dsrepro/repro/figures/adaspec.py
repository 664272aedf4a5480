"""AdaSPEC (arXiv 2510.19779) main table: the acceptance rate of AdaSPEC's selectively distilled draft vs
DistillSpec drafts (FKL on the same fixed data, as the authors compare, and on-policy GKD), per task, at the middle
gamma. Paper numbers: Pythia-31M -> Pythia-1.4B after 3 epochs (the authors' repository README)."""
from __future__ import annotations

import numpy as np

from dsrepro.kd.recipes import DISTILLSPEC, SFT, SUPERVISED
from dsrepro.repro import artefacts as ex
from dsrepro.repro import figure, plotting, stats
from dsrepro.repro.profiles import Profile

NAME = "adaspec"
PANEL = "adaspec_table"
FKL_FIXED, GKD, ADASPEC = "DistillSpec (FKL, fixed data)", "DistillSpec (GKD, on-policy)", "AdaSPEC"
# AdaSPEC's Table 1 (alpha %, DistillSpec -> AdaSPEC), from the authors' repository README (yuezhouhu/adaspec):
# Pythia-31M -> 1.4B after 3 epochs, the same at the best epoch, and CodeGen-350M -> Phi-2 after 3 epochs.
PUBLISHED = {
    "gsm8k": ((57.58, 61.02), (66.19, 68.28), (79.49, 82.79)),
    "alpaca": ((44.34, 47.25), (65.41, 65.79), (56.48, 58.80)),
    "mbpp": ((46.88, 47.73), (49.88, 65.12), (87.36, 88.76)),
    "cnn_dailymail": ((73.05, 74.22), (80.15, 80.89), (79.33, 80.63)),
    "xsum": ((47.24, 49.11), (56.11, 57.80), (58.88, 59.93)),
}
MORE = figure.ClaimDef(
    "adaspec.more_acceptance", NAME, "AdaSPEC accepts more than DistillSpec",
    "; ".join(f"{t} {a[0][0]} -> {a[0][1]}" for t, a in PUBLISHED.items()) + " (alpha %, Pythia-31M -> 1.4B, 3 "
    "epochs; best epoch and CodeGen -> Phi-2 in the table)",
    "alpha(AdaSPEC) - alpha(DistillSpec FKL on the same fixed data), percentage points, per task x decoding")


def build(p: Profile, root=None) -> dict:
  g = p.mid_gamma
  rows, stat_rows = [], []
  for task in p.adaspec_tasks:
    seeds = ex.kd_seeds(p)
    drafts = [(SFT, [ex.sft_draft(p, task, root)]), (FKL_FIXED, figure.distilled(p, task, SUPERVISED, root)),
              (GKD, figure.distilled(p, task, DISTILLSPEC, root)),
              (ADASPEC, [ex.adaspec_model(p, task, root, seed=s) for s in seeds])]
    arms = {}
    for label, ds in drafts:
      for (dec, _), recs in figure.seeded_records(p, task, ds, label, root, gammas=(g,)).items():
        rows.append(figure.summary(recs, label, p.seed))
        arms.setdefault(dec, {})[label] = figure.arm(recs)
    for dec, a in arms.items():
      diff = stats.bootstrap(lambda f: 100 * (figure.ALPHA(f[ADASPEC]) - figure.ALPHA(f[FKL_FIXED])),
                             {k: a[k] for k in (ADASPEC, FKL_FIXED)}, seed=p.seed)
      stat_rows.append(figure.stats_row(MORE, f"{task} {dec}", diff, a[ADASPEC].n_seeds, a[ADASPEC].n_prompts))
  return {PANEL: figure.table(rows), f"{NAME}_stats": figure.table(stat_rows)}


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
    sub = sub.assign(alpha_lo_pct=100 * sub.get("alpha_lo", sub.alpha_hat),
                     alpha_hi_pct=100 * sub.get("alpha_hi", sub.alpha_hat))
    bars = plotting.bars(ax, sub, "task", "model", "alpha_pct", models, labels={m: m for m in models},
                         err=("alpha_lo_pct", "alpha_hi_pct"))
    for r in bars.values():
      plotting.annotate(ax, r, f"{r.get_height():.1f}")
    ax.set_title(f"{dec}, gamma = {int(sub.gamma.iloc[0])}")
    ax.set_ylabel("token acceptance rate alpha (%)")
    ax.set_xlabel("task")
    ax.set_ylim(0, 1.35 * max(1.0, float(np.nanmax(sub.alpha_pct.to_numpy(float)))))
    ax.legend(fontsize=7, loc="upper left", ncol=2)
  fig.suptitle("AdaSPEC vs DistillSpec: acceptance rate of the draft (paper: AdaSPEC Table)")
  return fig


def key_numbers(tables: dict):
  """Our alpha (%) per draft beside AdaSPEC's published DistillSpec -> AdaSPEC numbers (3 epochs / best epoch)."""
  df = tables[PANEL]
  ours = figure.wide(df.assign(alpha_pct=100 * df.alpha_hat), ["task", "decoding"], "model", "alpha_pct")
  pub = lambda task, i: " -> ".join(f"{v:.2f}" for v in PUBLISHED[task][i]) if task in PUBLISHED else "n/a"
  return ours.assign(**{"paper 31M->1.4B, 3 ep.": [pub(t, 0) for t in ours.task],
                        "paper 31M->1.4B, best ep.": [pub(t, 1) for t in ours.task]})


SPEC = figure.FigureSpec(
    name=NAME, title="AdaSPEC vs DistillSpec", paper="AdaSPEC (arXiv 2510.19779), Table 1",
    notebook="table_adaspec", panels=(PANEL,), build=build, plot=plot, claims=(MORE,), key_numbers=key_numbers)
