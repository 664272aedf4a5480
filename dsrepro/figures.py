"""One function per paper figure / table: build (or load from the cache) every artefact it needs and return a
tidy pandas DataFrame (one row per model x task x decoding x gamma ...). Notebooks call these and plot.

Drafts compared: "SFT" (the raw, supervised fine-tuned draft) and the distilled drafts of the paper's Table 1
(dsrepro.distill.ALGORITHMS); "DistillSpec" in Fig. 1 / Table D.1 is the on-policy GKD draft (student-generated
data), the paper's recommended recipe. Speedups: ``speedup_c`` = tau / (c gamma + 1) with c measured here,
``speedup_wall`` = measured batch-1 wall time of target-only decoding / SD (Table D.1, Fig. 1).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from dsrepro import experiments as ex
from dsrepro.profiles import Profile
from dsrepro.runs import atomic_path

ALGOS = ("supervised_kd", "seqkd", "imitkd", "f_distill", "gkd")
GRID_DATA = ("ground_truth", "student", "teacher", "teacher+student")
GRID_DIV = ("fkl", "jsd", "rkl", "tvd")
DISTILLSPEC = "gkd"


def _mid_gamma(p: Profile) -> int:
  return p.gammas[len(p.gammas) // 2]


def _algo(p: Profile, task: str, name: str, root=None):
  from dsrepro import distill
  return ex.kd_model(p, task, name, distill.ALGORITHMS[name], root=root, track=True)


def _pair_records(p, task, draft, draft_id, label, root=None, **kw) -> list[dict]:
  target, t_id = ex.sft_model(p, task, p.target_size, root)
  recs = ex.sd_records(p, task, target, t_id, draft, draft_id, root, **kw)
  return [{**r, "model": label} for r in recs]


def table_d1(p: Profile, root=None) -> pd.DataFrame:
  """alpha, tau and speedup for every task x gamma x decoding x {SFT draft, DistillSpec draft} (+ wall time)."""
  rows = []
  for task in p.tasks:
    sft, s_id = ex.sft_model(p, task, p.draft_size, root)
    rows += _pair_records(p, task, sft, s_id, "SFT", root, wall_time=True)
    kd, k_id = _algo(p, task, DISTILLSPEC, root)
    rows += _pair_records(p, task, kd, k_id, "DistillSpec", root, wall_time=True)
  cols = ["task", "model", "decoding", "gamma", "alpha_hat", "alpha_tf", "tau", "c", "speedup_c", "speedup_pred",
          "speedup_wall"]
  return pd.DataFrame(rows)[cols]


def fig1(p: Profile, root=None) -> pd.DataFrame:
  """Speedup with the distilled vs the SFT draft per task and decoding, at each row's best gamma."""
  d1 = table_d1(p, root)
  best = d1.loc[d1.groupby(["task", "decoding", "model"])["speedup_c"].idxmax()]
  wide = best.pivot_table(index=["task", "decoding"], columns="model", values=["speedup_c", "speedup_wall", "tau"])
  out = best.reset_index(drop=True)
  gain = (wide["speedup_c"]["DistillSpec"] / wide["speedup_c"]["SFT"] - 1) * 100
  out["improvement_pct"] = [gain.loc[(r.task, r.decoding)] for r in out.itertuples()]
  return out


def fig2(p: Profile, root=None, gamma: int | None = None, temperature: float = 1.0) -> pd.DataFrame:
  """Block efficiency tau per KD algorithm per task (T = 1, gamma = 7 in the paper)."""
  gamma = gamma or max(p.gammas)
  rows = []
  for task in p.tasks:
    sft, s_id = ex.sft_model(p, task, p.draft_size, root)
    rows += _pair_records(p, task, sft, s_id, "SFT", root, gammas=(gamma,), temperatures=(temperature,))
    for name in ALGOS:
      m, m_id = _algo(p, task, name, root)
      rows += _pair_records(p, task, m, m_id, name, root, gammas=(gamma,), temperatures=(temperature,))
  df = pd.DataFrame(rows)[["task", "model", "decoding", "gamma", "alpha_hat", "tau", "alpha_tf"]]
  base = df[df.model == "SFT"].set_index("task")["tau"]
  df["tau_gain_pct"] = [(r.tau / base[r.task] - 1) * 100 for r in df.itertuples()]
  return df


def fig3a(p: Profile, root=None) -> pd.DataFrame:
  """Acceptance (alpha, tau) measured during distillation, from each KD run's metrics.jsonl; step 0 is the SFT
  draft every run starts from (experiments.tracker_at_init)."""
  rows = []
  for task in p.tasks[:1]:
    init = dict(ex.tracker_at_init(p, task, root), step=0)
    for name in ALGOS:
      _, run_id = _algo(p, task, name, root)
      path = ex._root(p, root) / run_id / "metrics.jsonl"
      records = [init] + [json.loads(line) for line in path.read_text().splitlines()]
      for r in records:
        for k, v in sorted(r.items()):  # a fresh and a cached record list the keys in different orders
          if k.startswith(("alpha/", "tau/")):
            metric, g, T = k.split("/")
            rows.append(dict(task=task, model=name, step=r["step"], metric=metric, gamma=int(g[1:]),
                             decoding="greedy" if T in ("T0", "T0.0") else "T=1", value=v))
  return pd.DataFrame(rows)


def fig3b(p: Profile, root=None, temperature: float = 1.0) -> pd.DataFrame:
  """Per-example tau of the SFT draft vs the DistillSpec draft (same prompts)."""
  g = _mid_gamma(p)
  rows = []
  for task in p.tasks:
    sft, s_id = ex.sft_model(p, task, p.draft_size, root)
    kd, k_id = _algo(p, task, DISTILLSPEC, root)
    a = _pair_records(p, task, sft, s_id, "SFT", root, gammas=(g,), temperatures=(temperature,))[0]
    b = _pair_records(p, task, kd, k_id, "DistillSpec", root, gammas=(g,), temperatures=(temperature,))[0]
    for i, (x, y) in enumerate(zip(a["tau_per_example"], b["tau_per_example"])):
      rows.append(dict(task=task, example=i, gamma=g, decoding=a["decoding"], tau_sft=x, tau_distilled=y))
  return pd.DataFrame(rows)


def fig3c(p: Profile, root=None) -> pd.DataFrame:
  """Theoretical tau(alpha_tf, gamma) vs empirical tau for the SFT and every distilled draft."""
  rows = []
  for task in p.tasks[:1]:
    sft, s_id = ex.sft_model(p, task, p.draft_size, root)
    rows += _pair_records(p, task, sft, s_id, "SFT", root)
    for name in ALGOS:
      m, m_id = _algo(p, task, name, root)
      rows += _pair_records(p, task, m, m_id, name, root)
  return pd.DataFrame(rows)[["task", "model", "decoding", "gamma", "alpha_tf", "tau_theory", "tau", "alpha_hat"]]


def fig4(p: Profile, root=None) -> pd.DataFrame:
  """tau improvement over the SFT draft for every (data source, divergence) cell, greedy and T = 1."""
  from dsrepro import distill
  g = _mid_gamma(p)
  rows = []
  for task in p.fig4_tasks:
    sft, s_id = ex.sft_model(p, task, p.draft_size, root)
    base = {r["decoding"]: r["tau"] for r in _pair_records(p, task, sft, s_id, "SFT", root, gammas=(g,))}
    for data in GRID_DATA:
      for div in GRID_DIV:
        kd = distill.grid_config(data, div)
        m, m_id = ex.kd_model(p, task, f"grid-{data}-{div}", kd, root=root, steps=p.kd_grid_steps)
        for r in _pair_records(p, task, m, m_id, f"{data}/{div}", root, gammas=(g,)):
          rows.append(dict(task=task, data=data, divergence=div, decoding=r["decoding"], gamma=g, tau=r["tau"],
                           tau_sft=base[r["decoding"]], improvement_pct=(r["tau"] / base[r["decoding"]] - 1) * 100))
  return pd.DataFrame(rows)


def fig5a(p: Profile, root=None) -> pd.DataFrame:
  """Each draft's own task score (and quality under the target) vs its tau as a draft (greedy, middle gamma)."""
  g = _mid_gamma(p)
  rows = []
  for task in p.tasks:
    drafts = [("SFT",) + ex.sft_model(p, task, p.draft_size, root)]
    drafts += [(n,) + _algo(p, task, n, root) for n in ALGOS]
    for label, m, m_id in drafts:
      own = ex.outputs(p, task, m, m_id, 0.0, root)
      r = _pair_records(p, task, m, m_id, label, root, gammas=(g,), temperatures=(0.0,))[0]
      rows.append(dict(task=task, model=label, gamma=g, tau=r["tau"], draft_task_score=own["task_score"],
                       draft_target_ll=own["target_ll"]))
  return pd.DataFrame(rows)


def fig5b(p: Profile, root=None, temperature: float = 1.0) -> pd.DataFrame:
  """Lossy SD: quality vs latency over lenience eps for f_lin, f_sq, f_exp, SFT vs DistillSpec draft."""
  g = _mid_gamma(p)
  task = p.tasks[0]
  rows = []
  sft, s_id = ex.sft_model(p, task, p.draft_size, root)
  kd, k_id = _algo(p, task, DISTILLSPEC, root)
  for label, m, m_id in (("SFT", sft, s_id), ("DistillSpec", kd, k_id)):
    for f in ("lin", "sq", "exp"):
      for eps in p.lenience_eps:
        r = _pair_records(p, task, m, m_id, label, root, gammas=(g,), temperatures=(temperature,), eps=eps,
                          lenience_fn=f)[0]
        rows.append(dict(task=task, model=label, lenience_fn=f, eps=eps, gamma=g, tau=r["tau"],
                         alpha_hat=r["alpha_hat"], speedup_c=r["speedup_c"], relative_latency=1 / r["speedup_c"],
                         task_score=r["task_score"], target_ll=r["target_ll"]))
  return pd.DataFrame(rows)


def fig6(p: Profile, root=None) -> pd.DataFrame:
  """Model garden quality vs latency: Raw, Distilled, Speculative, DistillSpec over the garden sizes.

  Raw: SFT model of each size alone. Distilled: each size distilled (SupervisedKD, for task quality) from the
  largest garden model. Speculative: SD with the Raw model as target and the smallest Raw model as draft.
  DistillSpec: SD with the Distilled model as target and the smallest model distilled on-policy (GKD) from it as
  draft. Garden distillations run ``p.kd_grid_steps`` steps (like the Fig. 4 cells). Latency is per generated
  token relative to the smallest Raw model; SD latency = target latency / speedup_c. Quality: target_ll (log-likelihood under the largest model, scale-robust) and the task score.
  """
  from dsrepro import distill
  task = p.tasks[0]
  g = _mid_gamma(p)
  big, big_id = ex.sft_model(p, task, p.garden[-1], root)
  small, small_id = ex.sft_model(p, task, p.garden[0], root)
  ctx = ex.task_data(p, task, root).max_prompt_len
  t_small = ex.forward_latency(p, small, 1, ctx, root)
  rows = []
  for size in p.garden:
    raw, raw_id = ex.sft_model(p, task, size, root)
    if size == p.garden[-1]:
      dist, dist_id = raw, raw_id
    else:
      dist, dist_id = ex.kd_model(p, task, f"garden-{size}", distill.ALGORITHMS["supervised_kd"],
                                  student_size=size, teacher=(big, big_id), root=root, steps=p.kd_grid_steps)
    t_rel = ex.forward_latency(p, raw, 1, ctx, root) / t_small
    for T in p.temperatures:
      dec = "greedy" if T == 0 else f"T={T:g}"
      for curve, model, mid in (("Raw", raw, raw_id), ("Distilled", dist, dist_id)):
        o = ex.outputs(p, task, model, mid, T, root)
        rows.append(dict(task=task, size=size, curve=curve, decoding=dec, relative_latency=t_rel,
                         task_score=o["task_score"], target_ll=_ll_under(p, task, big, o, root)))
      if size == p.garden[0]:
        continue
      spec = ex.sd_records(p, task, raw, raw_id, small, small_id, root, gammas=(g,), temperatures=(T,))[0]
      kd_draft, kd_id = ex.kd_model(p, task, f"garden-draft-{size}", distill.ALGORITHMS["gkd"],
                                    student_size=p.garden[0], teacher=(dist, dist_id), root=root,
                                    steps=p.kd_grid_steps)
      ds = ex.sd_records(p, task, dist, dist_id, kd_draft, kd_id, root, gammas=(g,), temperatures=(T,))[0]
      for curve, r, base in (("Speculative", spec, raw_id), ("DistillSpec", ds, dist_id)):
        o = ex.outputs(p, task, raw if curve == "Speculative" else dist, base, T, root)
        rows.append(dict(task=task, size=size, curve=curve, decoding=dec, relative_latency=t_rel / r["speedup_c"],
                         task_score=o["task_score"], target_ll=_ll_under(p, task, big, o, root)))
  return pd.DataFrame(rows)


def _ll_under(p, task, model, out: dict, root=None) -> float:
  return ex.target_loglik(model, ex.task_data(p, task, root), np.asarray(out["tokens"]), np.asarray(out["num"]))


def adaspec_table(p: Profile, root=None) -> pd.DataFrame:
  """DistillSpec (FKL on the same fixed data, and on-policy GKD) vs AdaSPEC acceptance per task."""
  g = _mid_gamma(p)
  rows = []
  for task in p.adaspec_tasks:
    drafts = [("SFT",) + ex.sft_model(p, task, p.draft_size, root),
              ("DistillSpec (FKL, fixed data)",) + _algo(p, task, "supervised_kd", root),
              ("DistillSpec (GKD, on-policy)",) + _algo(p, task, "gkd", root),
              ("AdaSPEC",) + ex.adaspec_model(p, task, root)]
    for label, m, m_id in drafts:
      for r in _pair_records(p, task, m, m_id, label, root, gammas=(g,)):
        rows.append(dict(task=task, model=label, decoding=r["decoding"], gamma=g, alpha_hat=r["alpha_hat"],
                         alpha_tf=r["alpha_tf"], tau=r["tau"]))
  return pd.DataFrame(rows)


def save(df: pd.DataFrame, out_dir, name: str) -> Path:
  out = Path(out_dir)
  out.mkdir(parents=True, exist_ok=True)
  path = out / f"{name}.csv"
  with atomic_path(path) as tmp:
    df.drop(columns=[c for c in df.columns if c.endswith("_per_example")], errors="ignore").to_csv(tmp, index=False)
  return path
