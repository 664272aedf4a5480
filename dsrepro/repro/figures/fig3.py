"""DistillSpec (arXiv 2310.08461) Fig. 3, draft / target alignment. (a) acceptance rate alpha measured during
distillation, one curve per KD algorithm and decoding (step 0 = the SFT draft every run starts from); (b) per-
example tau of the SFT vs the DistillSpec draft on the same prompts; (c) theoretical tau(alpha_tf, gamma) vs the
empirical tau of every draft."""
from __future__ import annotations

import numpy as np
import pandas as pd

from dsrepro.kd.distill import parse_alignment_key
from dsrepro.kd.recipes import ALGORITHMS, DISTILLSPEC, SFT
from dsrepro.repro import artefacts as ex
from dsrepro.repro import figure, plotting
from dsrepro.repro.profiles import Profile
from dsrepro.repro.stats import spearman

NAME = "fig3"
PANELS = ("fig3a", "fig3b", "fig3c")


def build_a(p: Profile, root=None) -> pd.DataFrame:
  """Acceptance (alpha, tau) logged during each KD run; step 0 is ``artefacts.tracker_at_init``."""
  rows = []
  for task in p.tasks[:1]:
    init = dict(ex.tracker_at_init(p, task, root), step=0)
    for name in ALGORITHMS:
      for r in [init] + figure.distilled(p, task, name, root).log():
        for k, v in sorted(r.items()):  # a fresh and a cached record list the keys in different orders
          key = parse_alignment_key(k)
          if key:
            rows.append(dict(task=task, model=name, step=r["step"], metric=key["metric"], gamma=key["gamma"],
                             decoding=key["decoding"], value=v))
  return pd.DataFrame(rows)


def build_b(p: Profile, root=None, temperature: float = 1.0) -> pd.DataFrame:
  g = figure.mid_gamma(p)
  kw = dict(gammas=(g,), temperatures=(temperature,))
  rows = []
  for task in p.tasks:
    a = figure.records(p, task, ex.sft_draft(p, task, root), SFT, root, **kw)[0]
    b = figure.records(p, task, figure.distilled(p, task, DISTILLSPEC, root), "DistillSpec", root, **kw)[0]
    for i, (x, y) in enumerate(zip(a["tau_per_example"], b["tau_per_example"])):
      rows.append(dict(task=task, example=i, gamma=g, decoding=a["decoding"], tau_sft=x, tau_distilled=y))
  return pd.DataFrame(rows)


def build_c(p: Profile, root=None) -> pd.DataFrame:
  rows = []
  for task in p.tasks[:1]:
    rows += figure.records(p, task, ex.sft_draft(p, task, root), SFT, root)
    for name in ALGORITHMS:
      rows += figure.records(p, task, figure.distilled(p, task, name, root), name, root)
  return figure.table(rows, ["task", "model", "decoding", "gamma", "alpha_tf", "tau_theory", "tau", "alpha_hat"])


def build(p: Profile, root=None) -> dict:
  return {"fig3a": build_a(p, root), "fig3b": build_b(p, root), "fig3c": build_c(p, root)}


def _draw_a(ax, df, metric="alpha"):
  sub = df[df.metric == metric] if df is not None and "metric" in df else df
  if plotting.no_data(ax, sub):
    return
  g = sorted(sub.gamma.unique())[len(sub.gamma.unique()) // 2]
  styles = {d: s for d, s in zip(plotting.decodings(sub), ("-", "--", ":"))}
  for i, model in enumerate(plotting.order(sub.model)):  # colour = algorithm, line style = decoding
    for dec, ls in styles.items():
      s = sub[(sub.model == model) & (sub.decoding == dec) & (sub.gamma == g)].sort_values("step")
      if len(s):
        ax.plot(s.step, s.value, ls, color=f"C{i}", marker="o", ms=3, label=f"{plotting.label(model)} ({dec})")
  ax.set_xlabel("distillation step (0 = SFT draft)")
  ax.set_ylabel("acceptance rate alpha" if metric == "alpha" else "block efficiency tau")
  ax.set_title(f"(a) {metric} during distillation, gamma = {g}")
  ax.legend(fontsize=6, handlelength=4)


def _draw_b(ax, df):
  if plotting.no_data(ax, df):
    return
  for task in dict.fromkeys(df.task):
    s = df[df.task == task]
    ax.scatter(s.tau_sft, s.tau_distilled, s=14, alpha=0.7, label=task)
  plotting.identity(ax, df.tau_sft, df.tau_distilled)
  above, equal = (df.tau_distilled > df.tau_sft).mean(), (df.tau_distilled == df.tau_sft).mean()
  ax.set_xlabel("tau with the SFT draft")
  ax.set_ylabel("tau with the DistillSpec draft")
  ax.set_title(f"(b) per example: {100 * above:.0f}% above y = x ({100 * equal:.0f}% on it)")
  ax.legend(fontsize=7)


def _draw_c(ax, df):
  if plotting.no_data(ax, df):
    return
  markers = {d: m for d, m in zip(plotting.decodings(df), "os^v")}
  colors = {m: f"C{i}" for i, m in enumerate(plotting.order(df.model))}
  for model, c in colors.items():
    for dec, mk in markers.items():
      s = df[(df.model == model) & (df.decoding == dec)]
      if len(s):
        ax.scatter(s.tau_theory, s.tau, c=c, marker=mk, s=22, label=f"{plotting.label(model)} ({dec})")
  plotting.identity(ax, df.tau_theory, df.tau)
  ax.set_xlabel("theoretical tau = (1 - alpha^(gamma+1)) / (1 - alpha)")
  ax.set_ylabel("empirical tau (tokens / target call)")
  ax.set_title(f"(c) theory vs measurement, Spearman rho = {spearman(df.tau_theory, df.tau):.2f}")
  ax.legend(fontsize=6, ncol=2)


def plot(tables: dict):
  import matplotlib.pyplot as plt
  fig, axes = plt.subplots(1, 3, figsize=(17, 4.8), layout="constrained")
  _draw_a(axes[0], tables["fig3a"])
  _draw_b(axes[1], tables["fig3b"])
  _draw_c(axes[2], tables["fig3c"])
  fig.suptitle("Fig. 3: draft / target alignment")
  return fig


def spearman_by_group(df: pd.DataFrame) -> pd.DataFrame:
  """Spearman rho of theoretical vs empirical tau across drafts within each (task, decoding, gamma)."""
  rows = [dict(task=k[0], decoding=k[1], gamma=k[2], n_drafts=len(g), spearman=spearman(g.tau_theory, g.tau))
          for k, g in df.groupby(["task", "decoding", "gamma"])]
  return pd.DataFrame(rows)


def claim_most_examples(tables: dict) -> figure.Claim:
  c = figure.Claim("fig3b", "Distilled draft improves tau for most examples", "most points above y = x",
                   "yes: > 50% of examples strictly above y = x; partly: more above than below; no: otherwise")
  df = tables["fig3b"]
  if df is None or df.empty:
    return c
  above, below = (df.tau_distilled > df.tau_sft).mean(), (df.tau_distilled < df.tau_sft).mean()
  return c.judged(f"{100 * above:.0f}% above, {100 * below:.0f}% below, {100 * (1 - above - below):.0f}% equal "
                  f"(n = {len(df)})", "yes" if above > 0.5 else "partly" if above > below else "no")


def claim_theory_ranking(tables: dict) -> figure.Claim:
  c = figure.Claim("fig3c", "Theoretical and empirical tau agree in ranking", "points close to y = x",
                   "Spearman rho between tau(alpha_tf, gamma) and measured tau across drafts within each "
                   "(task, decoding, gamma), averaged; yes: >= 0.8; partly: >= 0.5; no: otherwise")
  df = tables["fig3c"]
  if df is None or df.empty:
    return c
  rho = spearman_by_group(df).spearman.mean()
  return c.judged(f"mean within-group rho = {rho:.2f} (all points: {spearman(df.tau_theory, df.tau):.2f})",
                  "n/a (< 3 drafts)" if not np.isfinite(rho) else "yes" if rho >= 0.8 else
                  "partly" if rho >= 0.5 else "no")


def claims(tables: dict) -> list:
  return [claim_most_examples(tables), claim_theory_ranking(tables)]


def key_numbers(tables: dict):
  parts = []
  a = tables["fig3a"]
  if a is not None and not a.empty:
    a = a[a.metric == "alpha"].sort_values("step")
    g = a.groupby(["task", "model", "decoding", "gamma"]).value
    parts.append(pd.concat([g.first().rename("alpha_step0"), g.last().rename("alpha_last"),
                            a.groupby(["task", "model", "decoding", "gamma"]).step.max().rename("last_step")],
                           axis=1).reset_index())
  b = tables["fig3b"]
  if b is not None and not b.empty:
    parts.append(b.groupby(["task", "decoding", "gamma"]).apply(lambda g: pd.Series(dict(
        n=len(g), tau_sft=g.tau_sft.mean(), tau_distilled=g.tau_distilled.mean(),
        frac_above=(g.tau_distilled > g.tau_sft).mean())), include_groups=False).reset_index())
  c = tables["fig3c"]
  if c is not None and not c.empty:
    parts.append(spearman_by_group(c))
  return parts


SPEC = figure.FigureSpec(
    name=NAME, title="Fig. 3: draft / target alignment", paper="DistillSpec (arXiv 2310.08461), Fig. 3",
    notebook="fig3_alignment", panels=PANELS, build=build, plot=plot, claims=claims, key_numbers=key_numbers)
