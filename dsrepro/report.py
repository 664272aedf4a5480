"""``REPORT.md`` from the CSVs that the notebooks wrote (``figures.save``): for every paper figure / table the
figure, a short table of our key numbers and the paper's claims next to ours, each with a verdict (yes / partly /
no) computed from the data by the explicit rule shown beside it. Nothing of ours is hard-coded: a figure whose CSV
is missing is reported as "not run at this profile". Paper numbers: REFERENCE.md section 6.
"""
from __future__ import annotations

import datetime
import os
import platform
from pathlib import Path

import numpy as np
import pandas as pd

from dsrepro.plots import spearman
from dsrepro.runs import atomic_path

NOT_RUN = "not run at this profile"
GENERATED = ("seqkd", "f_distill", "gkd")   # KD algorithms trained on model-generated data only (paper Table 1)
KD_ALGOS = ("supervised_kd", "seqkd", "imitkd", "f_distill", "gkd")
LL_TOL = 0.05                                # nats / token: "about equal quality" in the model-garden claim

SECTIONS = (  # (csv / figure name, title)
    ("table_d1", "Table D.1: acceptance, block efficiency and speedup"),
    ("fig1", "Fig. 1: DistillSpec vs SFT draft speedup"),
    ("fig2", "Fig. 2: KD algorithms"),
    ("fig3a", "Fig. 3a: acceptance during distillation"),
    ("fig3b", "Fig. 3b: per-example block efficiency"),
    ("fig3c", "Fig. 3c: theoretical vs empirical block efficiency"),
    ("fig4", "Fig. 4: data source x divergence"),
    ("fig5a", "Fig. 5a: draft quality vs block efficiency"),
    ("fig5b", "Fig. 5b: lossy speculative decoding"),
    ("fig6", "Fig. 6: model garden"),
    ("adaspec_table", "AdaSPEC vs DistillSpec"),
)


def _md(df: pd.DataFrame) -> str:
  """A pipe table (no tabulate dependency); floats with 3 significant digits."""
  if df is None or df.empty:
    return "_(empty)_\n"
  fmt = lambda v: (f"{v:.3g}" if np.isfinite(v) else "nan") if isinstance(v, (float, np.floating)) else str(v)
  lines = ["| " + " | ".join(map(str, df.columns)) + " |", "|" + "---|" * len(df.columns)]
  lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in df.itertuples(index=False)]
  return "\n".join(lines) + "\n"


def _claim(figure, claim, paper, rule, ours=NOT_RUN, verdict=NOT_RUN) -> dict:
  return dict(figure=figure, claim=claim, paper=paper, ours=ours, verdict=verdict, rule=rule)


# ------------------------------------------------------------------------------------------------ claims


def claim_speedup(t: dict) -> dict:
  c = _claim("fig1", "Distilled draft speeds up SD over the SFT draft", "10-45% across 5 datasets, greedy and T=1",
             "yes: every task x decoding improves by >= 10%; partly: at least half improve (> 0%); no: otherwise")
  df = t.get("fig1")
  if df is None or df.empty:
    return c
  imp = df.drop_duplicates(["task", "decoding"]).improvement_pct.astype(float)
  c["ours"] = (f"{imp.min():+.1f}% .. {imp.max():+.1f}% (median {imp.median():+.1f}%) over {len(imp)} "
               "task x decoding")
  c["verdict"] = "yes" if imp.min() >= 10 else "partly" if (imp > 0).mean() >= 0.5 else "no"
  return c


def _fig2_tau(t: dict):
  df = t.get("fig2")
  return None if df is None or df.empty else df.pivot_table(index="task", columns="model", values="tau")


def claim_generated_data(t: dict) -> dict:
  c = _claim("fig2", "Model-generated data beats fixed data", "~20% more speedup than fixed-data KD",
             f"gain = mean tau of {'/'.join(GENERATED)} (generated data only) / tau of supervised_kd (fixed data) "
             "- 1, per task; yes: gain > 0 in every task and mean gain >= 10%; partly: mean gain > 0; no: otherwise")
  tau = _fig2_tau(t)
  if tau is None:
    return c
  gen = [a for a in GENERATED if a in tau]
  if "supervised_kd" not in tau or not gen:
    c["ours"] = c["verdict"] = "n/a (algorithms missing)"
    return c
  gain = (tau[gen].mean(axis=1) / tau["supervised_kd"] - 1) * 100
  c["ours"] = ", ".join(f"{k} {v:+.1f}%" for k, v in gain.items()) + f" (mean {gain.mean():+.1f}%)"
  c["verdict"] = "yes" if (gain > 0).all() and gain.mean() >= 10 else "partly" if gain.mean() > 0 else "no"
  return c


def claim_supervised_lowest(t: dict) -> dict:
  c = _claim("fig2", "SupervisedKD ranks lowest among the KD algorithms", "lowest tau of the 5 algorithms",
             "position = number of KD algorithms with a strictly lower tau than supervised_kd (0 = lowest); "
             "yes: 0 in every task; partly: <= 1 in at least half of the tasks; no: otherwise")
  tau = _fig2_tau(t)
  if tau is None:
    return c
  algos = [a for a in KD_ALGOS if a in tau]
  if "supervised_kd" not in algos:
    c["ours"] = c["verdict"] = "n/a (supervised_kd missing)"
    return c
  pos = pd.Series({task: int((row[algos] < row["supervised_kd"]).sum()) for task, row in tau.iterrows()})
  c["ours"] = ", ".join(f"{k}: {v + 1} of {len(algos)} from the bottom" for k, v in pos.items())
  c["verdict"] = "yes" if (pos == 0).all() else "partly" if (pos <= 1).mean() >= 0.5 else "no"
  return c


def claim_most_examples(t: dict) -> dict:
  c = _claim("fig3b", "Distilled draft improves tau for most examples", "most points above y = x",
             "yes: > 50% of examples strictly above y = x; partly: more above than below; no: otherwise")
  df = t.get("fig3b")
  if df is None or df.empty:
    return c
  above, below = (df.tau_distilled > df.tau_sft).mean(), (df.tau_distilled < df.tau_sft).mean()
  c["ours"] = f"{100 * above:.0f}% above, {100 * below:.0f}% below, {100 * (1 - above - below):.0f}% equal " \
              f"(n = {len(df)})"
  c["verdict"] = "yes" if above > 0.5 else "partly" if above > below else "no"
  return c


def fig3c_spearman(df: pd.DataFrame) -> pd.DataFrame:
  """Spearman rho of theoretical vs empirical tau across drafts within each (task, decoding, gamma)."""
  rows = [dict(task=k[0], decoding=k[1], gamma=k[2], n_drafts=len(g), spearman=spearman(g.tau_theory, g.tau))
          for k, g in df.groupby(["task", "decoding", "gamma"])]
  return pd.DataFrame(rows)


def claim_theory_ranking(t: dict) -> dict:
  c = _claim("fig3c", "Theoretical and empirical tau agree in ranking", "points close to y = x",
             "Spearman rho between tau(alpha_tf, gamma) and measured tau across drafts within each "
             "(task, decoding, gamma), averaged; yes: >= 0.8; partly: >= 0.5; no: otherwise")
  df = t.get("fig3c")
  if df is None or df.empty:
    return c
  rho = fig3c_spearman(df).spearman.mean()
  overall = spearman(df.tau_theory, df.tau)
  c["ours"] = f"mean within-group rho = {rho:.2f} (all points: {overall:.2f})"
  c["verdict"] = "n/a (< 3 drafts)" if not np.isfinite(rho) else "yes" if rho >= 0.8 else \
      "partly" if rho >= 0.5 else "no"
  return c


def claim_best_recipe(t: dict, task: str, decoding: str, data: str, div: str) -> dict:
  c = _claim("fig4", f"Best recipe on {task}, {decoding}", f"{data} data + {div.upper()}",
             "cells ranked by tau improvement over SFT; yes: the paper's cell is our best; partly: in our top 3; "
             "no: otherwise")
  df = t.get("fig4")
  sub = None if df is None else df[(df.task == task) & (df.decoding == decoding)]
  if sub is None or sub.empty:
    return c
  sub = sub.sort_values("improvement_pct", ascending=False).reset_index(drop=True)
  best = sub.iloc[0]
  hit = sub.index[(sub.data == data) & (sub.divergence == div)]
  rank = int(hit[0]) + 1 if len(hit) else None
  paper = f"paper's cell rank {rank}/{len(sub)} ({sub.improvement_pct[rank - 1]:+.1f}%)" if rank else \
      "paper's cell not run"
  c["ours"] = f"best {best.data}/{best.divergence.upper()} ({best.improvement_pct:+.1f}%); {paper}"
  c["verdict"] = "no" if rank is None else "yes" if rank == 1 else "partly" if rank <= 3 else "no"
  return c


def claim_garden(t: dict) -> dict:
  c = _claim("fig6", "DistillSpec cuts latency at about equal quality (model garden)",
             "17.3 -> 2.7 (XSum, 6.4x; ROUGE-2 23.1 -> 23.0), 15.0 -> 1.4 (GSM8K, 10.7x; acc. 33.1 -> 34.8)",
             f"per decoding: reduction = latency of the largest Raw model / lowest latency of a DistillSpec point "
             f"whose target_ll >= that model's - {LL_TOL}; yes: >= 2x in every decoding; partly: > 1x in some; "
             "no: otherwise")
  df = t.get("fig6")
  if df is None or df.empty:
    return c
  parts, red = [], []
  largest = list(dict.fromkeys(df["size"]))[-1]   # figures.fig6 lists the garden smallest first
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
  c["ours"] = "; ".join(parts) or "n/a"
  c["verdict"] = "yes" if red and min(red) >= 2 else "partly" if any(r > 1 for r in red) else "no"
  return c


def claim_adaspec(t: dict) -> dict:
  c = _claim("adaspec_table", "AdaSPEC accepts more than DistillSpec",
             "GSM8K 57.58 -> 62.63, Alpaca 44.34 -> 47.25, MBPP 46.88 -> 47.73, CNN/DM 73.05 -> 74.22, "
             "XSum 47.24 -> 49.11 (%)",
             "alpha of AdaSPEC vs DistillSpec with FKL on the same fixed data, per task x decoding; yes: higher in "
             "all; partly: in at least half; no: otherwise")
  df = t.get("adaspec_table")
  if df is None or df.empty:
    return c
  base = df[df.model.str.startswith("DistillSpec (FKL")].set_index(["task", "decoding"]).alpha_hat
  ada = df[df.model == "AdaSPEC"].set_index(["task", "decoding"]).alpha_hat
  keys = [k for k in ada.index if k in base.index]
  if not keys:
    c["ours"] = c["verdict"] = "n/a (rows missing)"
    return c
  wins = [ada[k] > base[k] for k in keys]
  c["ours"] = ", ".join(f"{k[0]} {k[1]} {100 * base[k]:.1f} -> {100 * ada[k]:.1f}" for k in keys)
  c["verdict"] = "yes" if all(wins) else "partly" if np.mean(wins) >= 0.5 else "no"
  return c


FIG4_PAPER = (("xsum", "greedy", "teacher+student", "jsd"), ("gsm8k", "greedy", "student", "fkl"),
              ("gsm8k", "T=1", "teacher", "rkl"))


def claims(tables: dict) -> list[dict]:
  """Every claim of REFERENCE.md section 6, evaluated on ``tables`` (name -> DataFrame or None)."""
  return [claim_speedup(tables), claim_generated_data(tables), claim_supervised_lowest(tables),
          claim_most_examples(tables), claim_theory_ranking(tables),
          *[claim_best_recipe(tables, *a) for a in FIG4_PAPER], claim_garden(tables), claim_adaspec(tables)]


# ------------------------------------------------------------------------------------------------ key numbers


def _wide(df, index, col, value):
  return df.pivot_table(index=index, columns=col, values=value).reset_index().rename_axis(columns=None)


def key_numbers(name: str, df: pd.DataFrame) -> pd.DataFrame:
  """A short table of our numbers for one figure."""
  if name == "table_d1":
    return df[[c for c in ("task", "model", "decoding", "gamma", "alpha_hat", "tau", "c", "speedup_c",
                           "speedup_wall") if c in df]]
  if name == "fig1":
    out = _wide(df, ["task", "decoding"], "model", "speedup_c")
    return out.merge(df.drop_duplicates(["task", "decoding"])[["task", "decoding", "improvement_pct"]])
  if name == "fig2":
    return _wide(df, ["task", "decoding", "gamma"], "model", "tau")
  if name == "fig3a":
    a = df[df.metric == "alpha"].sort_values("step")
    g = a.groupby(["task", "model", "decoding", "gamma"]).value
    return pd.concat([g.first().rename("alpha_step0"), g.last().rename("alpha_last"),
                      a.groupby(["task", "model", "decoding", "gamma"]).step.max().rename("last_step")],
                     axis=1).reset_index()
  if name == "fig3b":
    return df.groupby(["task", "decoding", "gamma"]).apply(lambda g: pd.Series(dict(
        n=len(g), tau_sft=g.tau_sft.mean(), tau_distilled=g.tau_distilled.mean(),
        frac_above=(g.tau_distilled > g.tau_sft).mean())), include_groups=False).reset_index()
  if name == "fig3c":
    return fig3c_spearman(df)
  if name == "fig4":
    rows = []
    for (task, dec), g in df.groupby(["task", "decoding"]):
      g = g.sort_values("improvement_pct")
      rows.append(dict(task=task, decoding=dec, best=f"{g.data.iloc[-1]}/{g.divergence.iloc[-1]}",
                       best_pct=g.improvement_pct.iloc[-1], worst=f"{g.data.iloc[0]}/{g.divergence.iloc[0]}",
                       worst_pct=g.improvement_pct.iloc[0], tau_sft=g.tau_sft.iloc[0]))
    return pd.DataFrame(rows)
  if name == "fig5b":
    ext = df[df.eps.isin([df.eps.max(), df.eps.min()])]
    return ext[["model", "lenience_fn", "eps", "tau", "relative_latency", "task_score", "target_ll"]]
  if name == "adaspec_table":
    return _wide(df.assign(alpha_pct=100 * df.alpha_hat), ["task", "decoding"], "model", "alpha_pct")
  return df


# ------------------------------------------------------------------------------------------------ report


def hardware_string() -> str:
  """Platform, CPU and JAX devices of this process."""
  import jax
  cpu = platform.processor() or platform.machine()
  try:  # Linux: the CPU model name
    cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
               if line.startswith("model name"))
  except (OSError, StopIteration):
    pass
  return (f"{platform.platform()}; CPU {cpu} x {os.cpu_count()}; jax {jax.__version__} "
          f"{jax.default_backend()}: {', '.join(str(d) for d in jax.devices())}")


def load_tables(out_dir) -> dict:
  out = Path(out_dir)
  return {name: pd.read_csv(out / f"{name}.csv") if (out / f"{name}.csv").exists() else None
          for name, _ in SECTIONS}


def _claims_md(rows: list[dict], with_figure: bool = True) -> str:
  cols = ["figure"] * with_figure + ["claim", "paper", "ours", "verdict", "rule"]
  return _md(pd.DataFrame(rows, columns=["figure", "claim", "paper", "ours", "verdict", "rule"])[cols])


def _cost_note(df) -> list[str]:
  """A sentence on whether SD is faster than the target alone at this profile (from Table D.1's c and speedups)."""
  if df is None or df.empty or not {"c", "speedup_c", "speedup_wall"} <= set(df.columns):
    return []
  c, sw = df.c.astype(float), df.speedup_wall.astype(float)
  faster = "faster" if sw.min() > 1 else "not faster" if sw.max() < 1 else "sometimes faster"
  return ["", f"At this profile the cost ratio c (draft / target forward latency, batch 1) is "
              f"{c.min():.2f}..{c.max():.2f} and SD is {faster} than target-only decoding: measured wall-time "
              f"speedup {sw.min():.2f}x..{sw.max():.2f}x, model-based tau / (c gamma + 1) "
              f"{df.speedup_c.min():.2f}x..{df.speedup_c.max():.2f}x. The speedup claims compare drafts at the "
              "same c, so they still test what distillation changes: alpha and tau."]


def build_report(out_dir, profile_name: str, hardware: str | None = None, command: str | None = None) -> Path:
  """Write ``<out_dir>/REPORT.md`` from the CSVs (and PNGs) in ``out_dir``; returns its path."""
  out = Path(out_dir)
  out.mkdir(parents=True, exist_ok=True)
  tables = load_tables(out)
  cl = claims(tables)
  verdicts = pd.Series([c["verdict"] for c in cl]).value_counts()
  lines = [
      "# DistillSpec / AdaSPEC reproduction report", "",
      f"- profile: `{profile_name}`",
      f"- hardware: {hardware or hardware_string()}",
      f"- date: {datetime.datetime.now().isoformat(timespec='seconds')}",
      f"- command: `{command or f'dsrepro all --profile {profile_name}'}`", "",
      "Our models are tiny and trained from scratch, so compare directions and ratios with the paper, not "
      "absolute values. Verdicts are computed from the CSVs next to this file by the rules stated in each row.",
      *_cost_note(tables.get("table_d1")), "", "## Claims", "",
      "Summary: " + ", ".join(f"{k}: {v}" for k, v in verdicts.items()), "",
      _claims_md(cl)]
  for name, title in SECTIONS:
    lines += [f"## {title}", ""]
    df = tables[name]
    if df is None:
      lines += [f"_{NOT_RUN}_ (no `{name}.csv`)", ""]
    else:
      if (out / f"{name}.png").exists():
        lines += [f"![{title}]({name}.png)", ""]
      if name == "fig3c" and (out / "fig3.png").exists():
        lines += ["![Fig. 3, all panels](fig3.png)", ""]
      lines += [f"Data: [`{name}.csv`]({name}.csv)", "", _md(key_numbers(name, df))]
    mine = [c for c in cl if c["figure"] == name]
    if mine:
      lines += ["Claims:", "", _claims_md(mine, with_figure=False)]
  path = out / "REPORT.md"
  with atomic_path(path) as tmp:
    tmp.write_text("\n".join(lines))
  return path
