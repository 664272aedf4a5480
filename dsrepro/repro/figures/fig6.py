"""DistillSpec (arXiv 2310.08461) Fig. 6, the model garden: quality vs latency over the model sizes for four
ways of serving a size: Raw (the SFT model alone), Distilled (each size distilled from the largest), Speculative
(SD with the Raw model as target and the smallest Raw model as draft) and DistillSpec (SD with the Distilled model
as target and the smallest model distilled on-policy from it as draft).

Garden distillations run ``p.kd_grid_steps`` steps (like the Fig. 4 cells); the Distilled models use SupervisedKD
(for task quality). Latency is per generated token relative to the smallest Raw model; SD latency = target latency
/ speedup_c. Quality: target_ll (log-likelihood under the largest model, scale-robust) and the task score."""
from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from dsrepro.kd.recipes import ALGORITHMS, DISTILLSPEC, SUPERVISED
from dsrepro.repro import artefacts as ex
from dsrepro.repro import evaluations as ev
from dsrepro.repro import figure, plotting, stats
from dsrepro.repro.figures.fig5 import quality_columns
from dsrepro.repro.profiles import Profile
from dsrepro.sd.sampling import decoding_label

NAME = "fig6"
CURVES = ("Raw", "Distilled", "Speculative", "DistillSpec")
LL_TOL = 0.05  # nats / token: "about equal quality" in the model-garden claim
GARDEN = figure.ClaimDef(
    "fig6.garden", NAME, "DistillSpec cuts latency at about equal quality (model garden)",
    "17.3 -> 2.7 (XSum, 6.4x; ROUGE-2 23.1 -> 23.0), 15.0 -> 1.4 (GSM8K, 10.7x; acc. 33.1 -> 34.8)",
    f"reduction = latency of the largest Raw model / lowest latency of a DistillSpec point whose log-likelihood "
    f"under the largest model is >= the largest Raw model's - {LL_TOL} nats/token (0 if none), per decoding",
    threshold=1.0)


def build(p: Profile, root=None) -> dict:
  task = p.tasks[0]
  g = p.mid_gamma
  big, small = ex.sft_model(p, task, p.garden[-1], root), ex.sft_model(p, task, p.garden[0], root)
  td = ex.task_data(p, task, root)
  ctx = td.max_prompt_len
  t_small = ev.forward_latency(p, small.model, 1, ctx, root)
  rows, stat_rows, arms, lat = [], [], {}, {}  # arms / lat: per decoding, {point name: Arm / relative latency}
  for size in p.garden:
    raw = ex.sft_model(p, task, size, root)
    dist = raw if size == p.garden[-1] else ex.kd_model(
        p, task, f"garden-{size}", ALGORITHMS[SUPERVISED], student_size=size, teacher=big, root=root,
        steps=p.kd_grid_steps)
    t_rel = ev.forward_latency(p, raw.model, 1, ctx, root) / t_small
    for T in p.temperatures:
      dec = decoding_label(T)
      quality = {}
      for curve, m in (("Raw", raw), ("Distilled", dist)):
        o = ev.outputs(p, task, m, T, root)
        ll = ev.loglik(big.model, td, o["tokens"], o["num"])
        quality[curve] = stats.Arm.of(ll_sum=[ll["ll_sum_per_example"]], ll_n=[ll["ll_n_per_example"]])
        arms.setdefault(dec, {})[f"{curve} {size}"] = quality[curve]
        lat.setdefault(dec, {})[f"{curve} {size}"] = t_rel
        rows.append(dict(task=task, size=size, curve=curve, decoding=dec, relative_latency=t_rel,
                         task_score=o["task_score"], target_ll=ll["target_ll"]))
      if size == p.garden[0]:
        continue
      spec = ev.sd_records(p, task, raw, small, root, gammas=(g,), temperatures=(T,))[0]
      kd_draft = ex.kd_model(p, task, f"garden-draft-{size}", ALGORITHMS[DISTILLSPEC], student_size=p.garden[0],
                             teacher=dist, root=root, steps=p.kd_grid_steps)
      ds = ev.sd_records(p, task, dist, kd_draft, root, gammas=(g,), temperatures=(T,))[0]
      arms[dec][f"DistillSpec {size} sd"] = figure.arm([dataclasses.asdict(ds)], ("tokens", "calls"))
      lat[dec][f"DistillSpec {size} sd"] = (t_rel, ds.c, g)
      for curve, r, base in (("Speculative", spec, "Raw"), ("DistillSpec", ds, "Distilled")):
        o = ev.outputs(p, task, raw if base == "Raw" else dist, T, root)
        rows.append(dict(task=task, size=size, curve=curve, decoding=dec, relative_latency=t_rel / r.speedup_c,
                         task_score=o["task_score"], target_ll=_ll(rows, size, dec, base)))
  largest = p.garden[-1]
  for dec, a in arms.items():
    red = stats.bootstrap(lambda f: _reduction(f, lat[dec], largest, p.garden), a, seed=p.seed)
    stat_rows.append(figure.stats_row(GARDEN, f"{task} {dec}", red, 1, next(iter(a.values())).n_prompts))
  return {NAME: pd.DataFrame(rows), f"{NAME}_stats": figure.table(stat_rows)}


def _ll(rows, size, dec, curve) -> float:
  return next(r["target_ll"] for r in rows if r["size"] == size and r["decoding"] == dec and r["curve"] == curve)


def _reduction(f: dict, lat: dict, largest: str, garden) -> float:
  """Latency of the largest Raw model / the lowest latency of a DistillSpec point of about equal quality."""
  ll = lambda name: float(f[name]["ll_sum"].sum() / max(f[name]["ll_n"].sum(), 1))
  bar = ll(f"Raw {largest}") - LL_TOL
  best = float("inf")
  for size in garden[1:]:
    key = f"DistillSpec {size} sd"
    if key in f and ll(f"Distilled {size}") >= bar:
      t_rel, c, g = lat[key]
      best = min(best, t_rel * (c * g + 1) / figure.TAU(f[key]))
  return lat[f"Raw {largest}"] / best if np.isfinite(best) else 0.0


def plot(tables: dict):
  """Curves Raw / Distilled / Speculative / DistillSpec with points labelled by model size; one column per
  decoding, one row per quality measure."""
  df = tables[NAME]
  if df.empty:
    return plotting.empty("Fig. 6")
  import matplotlib.pyplot as plt
  import matplotlib.ticker
  decs = plotting.decodings(df)
  cols = quality_columns(df, "task_score", "target_ll")
  fig, axes = plt.subplots(len(cols), len(decs), figsize=(5.5 * len(decs), 4.2 * len(cols)), squeeze=False,
                           layout="constrained")
  sizes = list(dict.fromkeys(df["size"]))
  for i, (col, ylabel) in enumerate(cols):
    for j, dec in enumerate(decs):
      ax = axes[i, j]
      for k, curve in enumerate(plotting.order(df.curve, CURVES)):
        s = df[(df.decoding == dec) & (df.curve == curve)].copy()
        s["o"] = s["size"].map(sizes.index)
        s = s.sort_values("o")
        if s.empty:
          continue
        ax.plot(s.relative_latency, s[col], marker="os^D"[k % 4], c=f"C{k}", label=curve)
        for r in s.itertuples():
          ax.annotate(r.size, (r.relative_latency, getattr(r, col)), fontsize=6, xytext=(3, 3),
                      textcoords="offset points")
      ax.set_xscale("log")
      ax.xaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
      ax.xaxis.set_minor_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
      ax.set_xlabel("relative latency / token (smallest Raw = 1, log)")
      ax.set_ylabel(ylabel.replace("target log-lik.", "log-lik. under largest model"))
      ax.set_title(f"{df.task.iloc[0]}, {dec}")
      ax.legend(fontsize=7)
  fig.suptitle("Fig. 6: model garden, quality vs latency")
  return fig


def key_numbers(tables: dict):
  return tables[NAME]


SPEC = figure.FigureSpec(
    name=NAME, title="Fig. 6: model garden", paper="DistillSpec (arXiv 2310.08461), Fig. 6",
    notebook="fig6_model_garden", panels=(NAME,), build=build, plot=plot, claims=(GARDEN,), key_numbers=key_numbers)
