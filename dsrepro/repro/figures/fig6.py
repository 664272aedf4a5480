"""DistillSpec (arXiv 2310.08461) Fig. 6, the model garden: quality vs latency over the model sizes for four
ways of serving a size: Raw (the SFT model alone), Distilled (each size distilled from the largest), Speculative
(SD with the Raw model as target and the smallest Raw model as draft) and DistillSpec (SD with the Distilled model
as target and the smallest model distilled on-policy from it as draft).

Garden distillations run ``p.kd_grid_steps`` steps (like the Fig. 4 cells); the Distilled models use SupervisedKD
(for task quality). Latency is per generated token relative to the smallest Raw model; SD latency = target latency
/ speedup_c. Quality: target_ll (log-likelihood under the largest model, scale-robust) and the task score."""
from __future__ import annotations

import pandas as pd

from dsrepro.kd.recipes import ALGORITHMS, DISTILLSPEC, SUPERVISED
from dsrepro.repro import artefacts as ex
from dsrepro.repro import figure, plotting
from dsrepro.repro.figures.fig5 import quality_columns
from dsrepro.repro.profiles import Profile
from dsrepro.sd.sampling import decoding_label

NAME = "fig6"
CURVES = ("Raw", "Distilled", "Speculative", "DistillSpec")
LL_TOL = 0.05  # nats / token: "about equal quality" in the model-garden claim


def build(p: Profile, root=None) -> dict:
  task = p.tasks[0]
  g = figure.mid_gamma(p)
  big, small = ex.sft_model(p, task, p.garden[-1], root), ex.sft_model(p, task, p.garden[0], root)
  td = ex.task_data(p, task, root)
  ctx = td.max_prompt_len
  t_small = ex.forward_latency(p, small.model, 1, ctx, root)
  ll = lambda out: ex.target_loglik(big.model, td, out["tokens"], out["num"])
  rows = []
  for size in p.garden:
    raw = ex.sft_model(p, task, size, root)
    dist = raw if size == p.garden[-1] else ex.kd_model(
        p, task, f"garden-{size}", ALGORITHMS[SUPERVISED], student_size=size, teacher=big, root=root,
        steps=p.kd_grid_steps)
    t_rel = ex.forward_latency(p, raw.model, 1, ctx, root) / t_small
    for T in p.temperatures:
      dec = decoding_label(T)
      for curve, m in (("Raw", raw), ("Distilled", dist)):
        o = ex.outputs(p, task, m, T, root)
        rows.append(dict(task=task, size=size, curve=curve, decoding=dec, relative_latency=t_rel,
                         task_score=o["task_score"], target_ll=ll(o)))
      if size == p.garden[0]:
        continue
      spec = ex.sd_records(p, task, raw, small, root, gammas=(g,), temperatures=(T,))[0]
      kd_draft = ex.kd_model(p, task, f"garden-draft-{size}", ALGORITHMS[DISTILLSPEC], student_size=p.garden[0],
                             teacher=dist, root=root, steps=p.kd_grid_steps)
      ds = ex.sd_records(p, task, dist, kd_draft, root, gammas=(g,), temperatures=(T,))[0]
      for curve, r, base in (("Speculative", spec, raw), ("DistillSpec", ds, dist)):
        o = ex.outputs(p, task, base, T, root)
        rows.append(dict(task=task, size=size, curve=curve, decoding=dec, relative_latency=t_rel / r.speedup_c,
                         task_score=o["task_score"], target_ll=ll(o)))
  return {NAME: pd.DataFrame(rows)}


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


def claims(tables: dict) -> list:
  c = figure.Claim(NAME, "DistillSpec cuts latency at about equal quality (model garden)",
                   "17.3 -> 2.7 (XSum, 6.4x; ROUGE-2 23.1 -> 23.0), 15.0 -> 1.4 (GSM8K, 10.7x; acc. 33.1 -> 34.8)",
                   f"per decoding: reduction = latency of the largest Raw model / lowest latency of a DistillSpec "
                   f"point whose target_ll >= that model's - {LL_TOL}; yes: >= 2x in every decoding; partly: > 1x in "
                   "some; no: otherwise")
  df = tables[NAME]
  if df is None or df.empty:
    return [c]
  parts, red = [], []
  largest = list(dict.fromkeys(df["size"]))[-1]   # build lists the garden smallest first
  for dec, g in df.groupby("decoding", sort=False):
    raw = g[(g.curve == "Raw") & (g["size"] == largest)]
    if raw.empty:
      continue
    big = raw.iloc[0]
    ok = g[(g.curve == "DistillSpec") & (g.target_ll >= big.target_ll - LL_TOL)]
    if ok.empty:
      parts.append(f"{dec}: no DistillSpec point within {LL_TOL} nats")
      red.append(0.0)
      continue
    best = ok.sort_values("relative_latency").iloc[0]
    r = big.relative_latency / best.relative_latency
    red.append(r)
    parts.append(f"{dec}: {big.relative_latency:.2f} -> {best.relative_latency:.2f} ({r:.1f}x, {best['size']} "
                 f"target), ll {big.target_ll:.2f} -> {best.target_ll:.2f}")
  return [c.judged("; ".join(parts) or "n/a",
                   "yes" if red and min(red) >= 2 else "partly" if any(r > 1 for r in red) else "no")]


def key_numbers(tables: dict):
  return tables[NAME]


SPEC = figure.FigureSpec(
    name=NAME, title="Fig. 6: model garden", paper="DistillSpec (arXiv 2310.08461), Fig. 6",
    notebook="fig6_model_garden", panels=(NAME,), build=build, plot=plot, claims=claims, key_numbers=key_numbers)
