"""Small synthetic panel tables with the columns of the figure modules (dsrepro.repro.figures.*), for the plot and
report tests."""
from __future__ import annotations

import numpy as np
import pandas as pd

ALGOS = ("supervised_kd", "seqkd", "imitkd", "f_distill", "gkd")
DECS = ("greedy", "T=1")


def tables(flip: bool = False, seed: int = 0, nan_scores: bool = False) -> dict[str, pd.DataFrame]:
  """Every figure's table. ``flip=False``: the data agrees with every paper claim; ``flip=True``: it contradicts
  each one. ``nan_scores``: task scores are NaN (e.g. LM1B)."""
  rng = np.random.default_rng(seed)
  s = -1.0 if flip else 1.0
  tasks = ("gsm8k", "xsum")
  score = (lambda v: np.nan) if nan_scores else (lambda v: v)
  out = {}

  d1 = []
  for task in tasks:
    for model in ("SFT", "DistillSpec"):
      for dec in DECS:
        for g in (3, 5):
          tau = 2.0 + (0.5 * s if model == "DistillSpec" else 0) + 0.1 * g
          d1.append(dict(task=task, model=model, decoding=dec, gamma=g, alpha_hat=tau / 4, alpha_tf=tau / 4.1,
                         tau=tau, c=0.2, speedup_c=tau / (0.2 * g + 1), speedup_pred=tau / (0.2 * g + 1.1),
                         speedup_wall=tau / (0.2 * g + 1.3)))
  out["table_d1"] = d1 = pd.DataFrame(d1).assign(tau_lo=lambda d: d.tau - 0.1, tau_hi=lambda d: d.tau + 0.1,
                                                 t_draft=0.1, t_target=1.0, t_verify=1.3)
  best = d1.loc[d1.groupby(["task", "decoding", "model"]).speedup_c.idxmax()].reset_index(drop=True)
  w = best.pivot_table(index=["task", "decoding"], columns="model", values="speedup_c")
  gain = (w.DistillSpec / w.SFT - 1) * 100
  best["improvement_pct"] = [gain.loc[(r.task, r.decoding)] for r in best.itertuples()]
  out["fig1"] = best.assign(improvement_lo=best.improvement_pct - 5, improvement_hi=best.improvement_pct + 5,
                            speedup_c_lo=best.speedup_c * 0.9, speedup_c_hi=best.speedup_c * 1.1)

  f2 = []
  for task in tasks:
    for i, m in enumerate(("SFT",) + ALGOS):
      tau = 2.0 + s * 0.2 * i if m != "SFT" else 1.9
      f2.append(dict(task=task, model=m, decoding="T=1", gamma=5, alpha_hat=tau / 4, tau=tau, alpha_tf=tau / 4))
  f2 = pd.DataFrame(f2)
  f2["tau_gain_pct"] = (f2.tau / 1.9 - 1) * 100
  out["fig2"] = f2.assign(tau_lo=f2.tau - 0.05, tau_hi=f2.tau + 0.05)

  out["fig3a"] = pd.DataFrame([dict(task="gsm8k", model=m, step=st, metric=met, gamma=5, decoding=dec,
                                    value=0.3 + 0.01 * st + 0.02 * i)
                               for i, m in enumerate(ALGOS) for st in (10, 20, 40) for met in ("alpha", "tau")
                               for dec in DECS])
  base = rng.uniform(1.5, 3.0, 40)
  out["fig3b"] = pd.DataFrame(dict(task="gsm8k", example=np.arange(40), gamma=5, decoding="T=1", tau_sft=base,
                                   tau_distilled=base + s * rng.uniform(0.05, 0.5, 40)))
  f3c = []
  for i, m in enumerate(("SFT",) + ALGOS):
    for dec in DECS:
      for g in (3, 5):
        th = 1.5 + 0.2 * i + 0.1 * g
        f3c.append(dict(task="gsm8k", model=m, decoding=dec, gamma=g, alpha_tf=0.4 + 0.05 * i, tau_theory=th,
                        tau=th + 0.05 if not flip else 3.0 - 0.2 * i, alpha_hat=0.4))
  out["fig3c"] = pd.DataFrame(f3c)

  best_cells = {("xsum", "greedy"): ("teacher+student", "jsd"), ("gsm8k", "greedy"): ("student", "fkl"),
                ("gsm8k", "T=1"): ("teacher", "rkl"), ("xsum", "T=1"): ("student", "tvd")}
  f4 = []
  for (task, dec), cell in best_cells.items():
    for data in ("ground_truth", "student", "teacher", "teacher+student"):
      for div in ("fkl", "jsd", "rkl", "tvd"):
        imp = rng.uniform(-10, 10) + (30 * s if (data, div) == cell else 0)
        f4.append(dict(task=task, data=data, divergence=div, decoding=dec, gamma=5, tau=2 * (1 + imp / 100),
                       tau_sft=2.0, improvement_pct=imp, improvement_lo=imp - 3, improvement_hi=imp + 3))
  out["fig4"] = pd.DataFrame(f4)

  out["fig5a"] = pd.DataFrame([dict(task=t, model=m, gamma=5, tau=2 + 0.1 * i, draft_task_score=score(0.1 * i),
                                    draft_target_ll=-3 + 0.1 * i)
                               for t in tasks for i, m in enumerate(("SFT",) + ALGOS)])
  f5b = []
  for m in ("SFT", "DistillSpec"):
    for f in ("lin", "sq", "exp"):
      for eps in (1.0, 0.5, 0.1):
        sp = 1.5 / eps ** 0.3 + (0.3 if m == "DistillSpec" else 0)
        f5b.append(dict(task="gsm8k", model=m, lenience_fn=f, eps=eps, gamma=5, tau=sp * 2, alpha_hat=0.5,
                        speedup_c=sp, relative_latency=1 / sp, task_score=score(0.3 * eps), target_ll=-2 - (1 - eps)))
  out["fig5b"] = pd.DataFrame(f5b)

  f6 = []
  for i, size in enumerate(("pico", "nano", "micro")):
    lat = 1.0 + 2.0 * i
    for dec in DECS:
      f6.append(dict(task="gsm8k", size=size, curve="Raw", decoding=dec, relative_latency=lat,
                     task_score=score(0.1 * i), target_ll=-3 + 0.5 * i))
      f6.append(dict(task="gsm8k", size=size, curve="Distilled", decoding=dec, relative_latency=lat,
                     task_score=score(0.1 * i + 0.02), target_ll=-3 + 0.5 * i + 0.05))
      if i:
        f6.append(dict(task="gsm8k", size=size, curve="Speculative", decoding=dec, relative_latency=lat / 1.5,
                       task_score=score(0.1 * i), target_ll=-3 + 0.5 * i))
        f6.append(dict(task="gsm8k", size=size, curve="DistillSpec", decoding=dec,
                       relative_latency=lat / 3 if not flip else lat * 1.2, task_score=score(0.1 * i + 0.02),
                       target_ll=-3 + 0.5 * i + 0.05))
  out["fig6"] = pd.DataFrame(f6)

  ada = []
  for task in ("gsm8k",):
    for dec in DECS:
      for m, a in (("SFT", 0.40), ("DistillSpec (FKL, fixed data)", 0.50), ("DistillSpec (GKD, on-policy)", 0.52),
                   ("AdaSPEC", 0.50 + s * 0.05)):
        ada.append(dict(task=task, model=m, decoding=dec, gamma=5, alpha_hat=a, alpha_tf=a, tau=1 / (1 - a)))
  out["adaspec_table"] = pd.DataFrame(ada).assign(alpha_lo=lambda d: d.alpha_hat - 0.01,
                                                  alpha_hi=lambda d: d.alpha_hat + 0.01)
  out.update(stats_tables(flip))
  return out


def stats_tables(flip: bool = False) -> dict[str, pd.DataFrame]:
  """Every figure's ``<name>_stats`` panel: one cell per claim whose interval lies clearly on the paper's side of
  the claim's threshold (``flip``: clearly on the other side)."""
  from dsrepro.repro.figures import FIGURES
  out = {}
  for spec in FIGURES.values():
    rows = []
    for c in spec.claims:
      est = c.threshold + (-1 if flip else 1) * c.direction * 1.0
      rows.append(dict(claim=c.id, cell="gsm8k greedy", estimate=est, lo=est - 0.5, hi=est + 0.5, n_seeds=3,
                       n_prompts=32))
    if rows:
      out[spec.stats_panel] = pd.DataFrame(rows)
  return out


def by_figure(panels: dict[str, pd.DataFrame]) -> dict[str, dict]:
  """The panel tables grouped as the registry's figures take them: {figure name: {panel: DataFrame}}."""
  from dsrepro.repro.figures import FIGURES
  return {name: {p: panels.get(p) for p in spec.all_panels} for name, spec in FIGURES.items()}
