"""DistillSpec (arXiv 2310.08461) Fig. 5, quality vs efficiency. (a) each draft's OWN quality (its task score and
the log-likelihood of its outputs under the target) vs its block efficiency tau as a draft: a better draft for SD
need not be a better model; (b) lossy speculative decoding: output quality vs relative latency as the lenience eps
falls, for f_lin, f_sq and f_exp, with the SFT and the DistillSpec draft."""
from __future__ import annotations

import numpy as np
import pandas as pd

from dsrepro.kd.recipes import ALGORITHMS, DISTILLSPEC, SFT
from dsrepro.repro import artefacts as ex
from dsrepro.repro import evaluations as ev
from dsrepro.repro import figure, plotting, stats
from dsrepro.repro.profiles import Profile
from dsrepro.sd.speculative import LENIENCE_FNS

NAME = "fig5"
PANELS = ("fig5a", "fig5b")
QUALITY = figure.ClaimDef(
    "fig5.quality", NAME, "The quality axis is real: the target's task score is above zero",
    "XSum ROUGE-2 23.1, GSM8K accuracy 33.1 (Fig. 6 targets)",
    "the SFT target's own task score (greedy outputs; accuracy or ROUGE-2, 0-100), per task with a task metric",
    kind="check")


def build_a(p: Profile, root=None) -> pd.DataFrame:
  g = p.mid_gamma
  rows = []
  for task in p.tasks:
    drafts = [(SFT, ex.sft_draft(p, task, root))] + [(n, figure.distilled(p, task, n, root)[0]) for n in ALGORITHMS]
    for label, m in drafts:
      own = ev.outputs(p, task, m, 0.0, root)
      r = figure.records(p, task, m, label, root, gammas=(g,), temperatures=(0.0,))[0]
      rows.append(dict(task=task, model=label, gamma=g, tau=r["tau"], draft_task_score=own["task_score"],
                       draft_target_ll=own["target_ll"]))
  return pd.DataFrame(rows)


def build_b(p: Profile, root=None, temperature: float = 1.0) -> pd.DataFrame:
  g = p.mid_gamma
  task = p.tasks[0]
  rows = []
  for label, m in ((SFT, ex.sft_draft(p, task, root)),
                   ("DistillSpec", figure.distilled(p, task, DISTILLSPEC, root)[0])):
    for f in LENIENCE_FNS:
      for eps in p.lenience_eps:
        r = figure.records(p, task, m, label, root, gammas=(g,), temperatures=(temperature,), eps=eps,
                           lenience_fn=f, quality=True)[0]
        rows.append(dict(task=task, model=label, lenience_fn=f, eps=eps, gamma=g, tau=r["tau"],
                         alpha_hat=r["alpha_hat"], speedup_c=r["speedup_c"], relative_latency=1 / r["speedup_c"],
                         task_score=r["task_score"], target_ll=r["target_ll"]))
  return pd.DataFrame(rows)


def quality(p: Profile, root=None) -> list[dict]:
  """The check that Fig. 5 and 6 have a quality axis: the target's greedy task score with its interval."""
  rows = []
  for task in p.tasks:
    own = ev.outputs(p, task, ex.target(p, task, root), 0.0, root)
    score = np.asarray(own["score_per_example"], float)
    if np.isfinite(score).all():
      iv = stats.bootstrap(lambda f: float(f["t"]["score"].mean()), {"t": stats.Arm.of(score=[score])}, seed=p.seed)
      rows.append(figure.stats_row(QUALITY, f"{task} ({ex.task_data(p, task, root).metric})", iv, 1, len(score)))
  return rows


def build(p: Profile, root=None) -> dict:
  return {"fig5a": build_a(p, root), "fig5b": build_b(p, root), f"{NAME}_stats": figure.table(quality(p, root))}


def _draw_a(axes, df):
  for ax, (col, ylabel) in zip(axes, quality_columns(df, "draft_task_score", "draft_target_ll")):
    for k, task in enumerate(dict.fromkeys(df.task)):
      s = df[df.task == task]
      ax.scatter(s.tau, s[col], s=30, c=f"C{k}", label=task)
      for r in s.itertuples():
        ax.annotate(plotting.label(r.model), (r.tau, getattr(r, col)), xytext=(3, 3), textcoords="offset points",
                    fontsize=6)
    ax.set_xlabel(f"tau as a draft (greedy, gamma = {int(df.gamma.iloc[0])})")
    ax.set_ylabel(f"draft's own {ylabel}")
    ax.set_title("(a) draft quality vs draft efficiency")
    ax.legend(fontsize=7)


def _draw_b(axes, df):
  styles = {SFT: "--", "DistillSpec": "-"}
  for ax, (col, ylabel) in zip(axes, quality_columns(df, "task_score", "target_ll")):
    for k, f in enumerate(dict.fromkeys(df.lenience_fn)):
      for model in plotting.order(df.model, (SFT, "DistillSpec")):
        s = df[(df.lenience_fn == f) & (df.model == model)].sort_values("eps")
        if s.empty:
          continue
        ax.plot(s.relative_latency, s[col], styles.get(model, ":"), marker="o", ms=3, c=f"C{k}",
                label=f"f_{f}, {plotting.label(model)}")
        if k == 0 and model == "DistillSpec":
          for r in s.itertuples():
            ax.annotate(f"eps={r.eps:g}", (r.relative_latency, getattr(r, col)), fontsize=6, xytext=(3, -8),
                        textcoords="offset points")
    ax.set_xlabel("relative latency (1 / speedup; target-only = 1)")
    ax.set_ylabel(ylabel)
    ax.set_title(f"(b) lossy SD on {df.task.iloc[0]}, gamma = {int(df.gamma.iloc[0])}")
    ax.legend(fontsize=6, handlelength=4)  # long enough to show the dashes


def quality_columns(df, score: str, ll: str) -> list[tuple[str, str]]:
  """(column, axis label) of the quality measures to show: the task score when the task has one, and the
  log-likelihood under the target always."""
  if plotting.has(df, score):
    return [(score, plotting.SCORE_LABEL), (ll, plotting.LL_LABEL)]
  return [(ll, plotting.LL_LABEL[:-1] + "; task score n/a)")]


def plot(tables: dict):
  import matplotlib.pyplot as plt
  a, b = tables["fig5a"], tables["fig5b"]
  na = len(quality_columns(a, "draft_task_score", "draft_target_ll")) if a is not None and not a.empty else 1
  nb = len(quality_columns(b, "task_score", "target_ll")) if b is not None and not b.empty else 1
  fig, axes = plt.subplots(1, na + nb, figsize=(5.3 * (na + nb), 4.2), squeeze=False, layout="constrained")
  axes = list(axes.flat)
  if not plotting.no_data(axes[0], a):
    _draw_a(axes[:na], a)
  if not plotting.no_data(axes[na], b):
    _draw_b(axes[na:], b)
  fig.suptitle("Fig. 5: quality vs efficiency")
  return fig


def key_numbers(tables: dict):
  a, b = tables["fig5a"], tables["fig5b"]
  parts = [] if a is None else [a]
  if b is not None and not b.empty:
    ext = b[b.eps.isin([b.eps.max(), b.eps.min()])]
    parts.append(ext[["model", "lenience_fn", "eps", "tau", "relative_latency", "task_score", "target_ll"]])
  return parts


SPEC = figure.FigureSpec(
    name=NAME, title="Fig. 5: quality vs efficiency", paper="DistillSpec (arXiv 2310.08461), Fig. 5",
    notebook="fig5_quality_latency", panels=PANELS, build=build, plot=plot, claims=(QUALITY,),
    key_numbers=key_numbers)
