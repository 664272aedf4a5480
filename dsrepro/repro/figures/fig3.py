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
from dsrepro.repro import figure, plotting, stats
from dsrepro.repro.profiles import Profile
from dsrepro.repro.stats import spearman
from dsrepro.sd import theory
from dsrepro.sd.sampling import decoding_label

NAME = "fig3"
PANELS = ("fig3a", "fig3b", "fig3c")
MOST = figure.ClaimDef(
    "fig3.most_examples", NAME, "Distilled draft improves tau for most examples", "most points above y = x (Fig. 3b)",
    "fraction of evaluation prompts whose tau with the DistillSpec draft (pooled over KD seeds) is strictly above "
    "the SFT draft's, per task", threshold=0.5)
RANKING = figure.ClaimDef(
    "fig3.theory_ranking", NAME, "Theoretical and empirical tau agree in ranking", "points close to y = x (Fig. 3c)",
    "Spearman rho between tau(alpha_tf, gamma) and measured tau across the drafts (SFT + Table 1), per decoding x "
    "gamma, averaged over them, per task")


def build_a(p: Profile, root=None) -> pd.DataFrame:
  """Acceptance (alpha, tau) logged during each KD run (first KD seed); step 0 is ``artefacts.tracker_at_init``."""
  rows = []
  for task in p.tasks[:1]:
    init = dict(ex.tracker_at_init(p, task, root), step=0)
    for name in ALGORITHMS:
      for r in [init] + figure.distilled(p, task, name, root)[0].log():
        for k, v in sorted(r.items()):  # a fresh and a cached record list the keys in different orders
          key = parse_alignment_key(k)
          if key:
            rows.append(dict(task=task, model=name, step=r["step"], metric=key["metric"], gamma=key["gamma"],
                             decoding=key["decoding"], value=v))
  return pd.DataFrame(rows)


def _per_prompt_tau(a) -> np.ndarray:
  """tau of each prompt, pooled over the arm's seeds: sum of tokens / sum of target calls."""
  return a.fields["tokens"].sum(0) / np.maximum(a.fields["calls"].sum(0), 1)


def build_b(p: Profile, root=None, temperature: float = 1.0) -> tuple[pd.DataFrame, list[dict]]:
  g = p.mid_gamma
  kw = dict(gammas=(g,), temperatures=(temperature,))
  rows, stat_rows = [], []
  for task in p.tasks:
    arms = {label: figure.arm(next(iter(figure.seeded_records(p, task, ds, label, root, **kw).values())))
            for label, ds in ((SFT, [ex.sft_draft(p, task, root)]),
                              ("DistillSpec", figure.distilled(p, task, DISTILLSPEC, root)))}
    a, b = _per_prompt_tau(arms[SFT]), _per_prompt_tau(arms["DistillSpec"])
    for i, (x, y) in enumerate(zip(a, b)):
      rows.append(dict(task=task, example=i, gamma=g, decoding=decoding_label(temperature), tau_sft=x,
                       tau_distilled=y))
    frac = stats.bootstrap(lambda f: float(np.mean(f["DistillSpec"]["tokens"].sum(0)
                                                   / np.maximum(f["DistillSpec"]["calls"].sum(0), 1)
                                                   > f[SFT]["tokens"].sum(0) / np.maximum(f[SFT]["calls"].sum(0), 1))),
                           arms, seed=p.seed)
    stat_rows.append(figure.stats_row(MOST, task, frac, arms["DistillSpec"].n_seeds, arms["DistillSpec"].n_prompts))
  return pd.DataFrame(rows), stat_rows


def build_c(p: Profile, root=None) -> tuple[pd.DataFrame, list[dict]]:
  rows, stat_rows = [], []
  for task in p.tasks[:1]:
    groups = {}  # (decoding, gamma) -> {draft: arm}
    for label, ds in ((SFT, [ex.sft_draft(p, task, root)]), *((a, figure.distilled(p, task, a, root))
                                                              for a in ALGORITHMS)):
      for (dec, g), recs in figure.seeded_records(p, task, ds, label, root).items():
        s = figure.summary(recs, label, p.seed)
        rows.append(dict(task=task, model=label, decoding=dec, gamma=g, alpha_tf=s["alpha_tf"],
                         tau_theory=float(theory.expected_block_efficiency(s["alpha_tf"], g)), tau=s["tau"],
                         tau_lo=s["tau_lo"], tau_hi=s["tau_hi"], alpha_hat=s["alpha_hat"]))
        groups.setdefault((dec, g), {})[label] = figure.arm(recs)

    def mean_rho(f_by_group):
      rhos = []
      for (dec, g), f in f_by_group.items():
        th = [theory.expected_block_efficiency(float(np.clip(np.nanmean(x["alpha_tf"]), 0, 1)), g)
              for x in f.values()]
        rhos.append(spearman(th, [figure.TAU(x) for x in f.values()]))
      return float(np.nanmean(rhos)) if np.isfinite(rhos).any() else float("nan")

    flat = {f"{dec}|{g}|{d}": arm for (dec, g), arms in groups.items() for d, arm in arms.items()}
    regroup = lambda f: {k: {d.split("|")[2]: f[d] for d in f if d.startswith(f"{k[0]}|{k[1]}|")} for k in groups}
    rho = stats.bootstrap(lambda f: mean_rho(regroup(f)), flat, seed=p.seed)
    stat_rows.append(figure.stats_row(RANKING, task, rho, max(a.n_seeds for a in flat.values()),
                                      next(iter(flat.values())).n_prompts))
  return pd.DataFrame(rows), stat_rows


def build(p: Profile, root=None) -> dict:
  b, sb = build_b(p, root)
  c, sc = build_c(p, root)
  return {"fig3a": build_a(p, root), "fig3b": b, "fig3c": c, f"{NAME}_stats": figure.table(sb + sc)}


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
    notebook="fig3_alignment", panels=PANELS, build=build, plot=plot, claims=(MOST, RANKING),
    key_numbers=key_numbers)
