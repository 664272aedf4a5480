"""The domain-draft study (arXiv 2503.07807, "Training Domain Draft Models for Speculative Decoding"), figures (a),
(b) and (e): acceptance of the generic draft vs every distilled domain draft per domain; offline vs online x
white-box vs black-box as a 2 x 2 per domain; and the online arm's acceptance over its query stream. Terms and
budgets: ``dsrepro.repro.domain`` (every domain draft starts from the generic draft, trains on N examples with U
updates of B rows; the online arm serves the same N queries). Evaluation: real SD with the domain target on the
domain's held-out prompts at the middle gamma, greedy and T = 1, intervals over seeds x prompts."""
from __future__ import annotations

import numpy as np
import pandas as pd

from dsrepro.repro import domain, figure, plotting, stats
from dsrepro.repro.profiles import Profile

NAME = "domain"
PANEL, STREAM = "domain_acceptance", "domain_stream"
OFF_W, OFF_B, ON_W, ON_B = "offline white-box", "offline black-box", "online white-box", "online black-box"
D1 = figure.ClaimDef(
    "domain.D1", NAME, "D1: the generic draft accepts less on the domain than a domain draft",
    "acceptance drops under the domain shift; distilled domain drafts recover it (arXiv 2503.07807)",
    f"alpha({OFF_W} domain draft, N historical queries) - alpha({domain.GENERIC}), per domain x decoding")
D2 = figure.ClaimDef(
    "domain.D2", NAME, "D2: offline distillation beats online distillation (white-box)",
    "offline beats online by 11-25% acceptance (arXiv 2503.07807)",
    f"alpha({OFF_W}) / alpha({ON_W}) - 1 at equal N queries and U updates, per domain x decoding")
D2B = figure.ClaimDef(
    "domain.D2b", NAME, "D2 (black-box arms): offline distillation beats online distillation",
    "offline beats online by 11-25% acceptance (arXiv 2503.07807)",
    f"alpha({OFF_B}) / alpha({ON_B}) - 1 at equal N queries and U updates, per domain x decoding")
D3 = figure.ClaimDef(
    "domain.D3", NAME, "D3: white-box distillation beats black-box distillation",
    "white-box beats black-box by 2-10% acceptance (arXiv 2503.07807)",
    f"alpha({OFF_W}) / alpha({OFF_B}) - 1 (offline, N historical queries), per domain x decoding")
BUDGET = ("mode", "box", "scenario", "examples", "updates", "batch", "tokens_seen")


def describe(recipe: domain.Recipe | None, drafts: list, s: domain.Settings) -> dict:
  """The budget columns of one arm (mean over its seeds; the generic draft trained on nothing)."""
  if recipe is None:
    return dict(mode="none", box="none", scenario="none", examples=0, updates=0, batch=0, tokens_seen=0)
  used = [domain.budget(d) for d in drafts]
  return dict(mode=recipe.mode, box=recipe.box, scenario=recipe.scenario, examples=used[0]["examples"],
              updates=used[0]["updates"], batch=used[0]["batch"],
              tokens_seen=float(np.mean([u["tokens_seen"] for u in used])))


def arm_records(p: Profile, task: str, recipes: list, root=None) -> tuple[list[dict], dict]:
  """Display rows (``figure.summary`` + budget) and {decoding: {label: stats.Arm}} of the generic draft and the
  ``recipes``' drafts (one per seed), evaluated with the domain target at the middle gamma."""
  s = domain.settings(p)
  entries = [(domain.GENERIC, None, [domain.generic_draft(p, root)])]
  entries += [(r.label(s), r, domain.drafts(p, task, r, root)) for r in dict.fromkeys(recipes)]
  rows, arms = [], {}
  for label, recipe, drafts in entries:
    info = describe(recipe, drafts, s)
    for (dec, _), recs in figure.seeded_records(p, task, drafts, label, root, gammas=(s.gamma,)).items():
      rows.append({**figure.summary(recs, label, p.seed), **info})
      arms.setdefault(dec, {})[label] = figure.arm(recs)
  return rows, arms


def ratio(a: str, b: str):
  return lambda f: figure.ALPHA(f[a]) / figure.ALPHA(f[b]) - 1


def build(p: Profile, root=None) -> dict:
  s = domain.settings(p)
  rows, stream_rows, stat_rows = [], [], []
  for task in s.tasks:
    task_rows, arms = arm_records(p, task, domain.main_recipes(s) + domain.scenario_recipes(s), root)
    rows += task_rows
    for dec, a in arms.items():
      cell = f"{task} {dec}"
      for claim, x, y, stat in ((D1, OFF_W, domain.GENERIC, lambda f: figure.ALPHA(f[OFF_W]) - figure.ALPHA(f[
          domain.GENERIC])), (D2, OFF_W, ON_W, ratio(OFF_W, ON_W)), (D2B, OFF_B, ON_B, ratio(OFF_B, ON_B)),
                                (D3, OFF_W, OFF_B, ratio(OFF_W, OFF_B))):
        iv = stats.bootstrap(stat, {x: a[x], y: a[y]}, seed=p.seed)
        stat_rows.append(figure.stats_row(claim, cell, iv, a[x].n_seeds, a[x].n_prompts))
    for box in domain.BOXES:
      recipe = domain.Recipe("online", box, "historical", s.examples)
      for seed, d in zip(s.seeds, domain.drafts(p, task, recipe, root)):
        stream_rows += [dict(task=task, model=recipe.label(s), box=box, seed=seed, chunk=r.chunk, step=r.step,
                             queries=r.queries, alpha=r.alpha, tau=r.tau, accepted=r.accepted, drafted=r.drafted)
                        for r in domain.stream(d)]
  return {PANEL: figure.table(rows), STREAM: figure.table(stream_rows), f"{NAME}_stats": figure.table(stat_rows)}


# ------------------------------------------------------------------------------------------------ plot


def _usable(df) -> bool:
  return df is not None and not df.empty


def _bars(axes, df: pd.DataFrame):
  """(a): alpha and tau per domain, one bar per draft, 95% intervals."""
  models = list(dict.fromkeys(df.model))
  for row, (metric, name) in enumerate((("alpha_hat", "acceptance alpha"), ("tau", "block efficiency tau"))):
    for ax, dec in zip(axes[row], plotting.decodings(df)):
      sub = df[df.decoding == dec]
      lo, hi = metric.replace("_hat", "") + "_lo", metric.replace("_hat", "") + "_hi"
      plotting.bars(ax, sub, "task", "model", metric, models, labels={m: m for m in models},
                    err=(lo, hi) if lo in sub and hi in sub else None)
      ax.set_title(f"(a) {name}, {dec}, gamma = {int(sub.gamma.iloc[0])}", fontsize=9)
      ax.set_ylabel(name)
      ax.set_ylim(0, 1.5 * max(1e-6, float(np.nanmax(sub.get(hi, sub[metric]).to_numpy(float)))))
  axes[0][0].legend(fontsize=6, ncol=2, loc="upper left")


def _grid2x2(axes, df: pd.DataFrame):
  """(b): offline / online x white / black acceptance per domain and decoding, annotated with intervals."""
  cells = [(t, d) for t in dict.fromkeys(df.task) for d in plotting.decodings(df)]
  for ax, (task, dec) in zip(axes, cells):
    sub = df[(df.task == task) & (df.decoding == dec)]
    grid = np.full((2, 2), np.nan)
    text = [["", ""], ["", ""]]
    for i, mode in enumerate(domain.MODES):
      for j, box in enumerate(domain.BOXES):
        r = sub[sub.model == f"{mode} {box}-box"]
        if len(r):
          r = r.iloc[0]
          grid[i, j] = r.alpha_hat
          text[i][j] = f"{r.alpha_hat:.3f}" + (f"\n[{r.alpha_lo:.3f}, {r.alpha_hi:.3f}]" if "alpha_lo" in r else "")
    ok = np.isfinite(grid).any()
    lo, hi = (np.nanmin(grid), np.nanmax(grid)) if ok else (0.0, 1.0)
    ax.imshow(grid, cmap="Blues", vmin=lo - 0.25 * (hi - lo or 1.0), vmax=hi, aspect="auto")
    for i in range(2):
      for j in range(2):
        dark = ok and np.isfinite(grid[i, j]) and grid[i, j] > (lo + hi) / 2
        ax.text(j, i, text[i][j], ha="center", va="center", fontsize=7, color="w" if dark else "k")
    ax.set_xticks([0, 1], ["white-box", "black-box"])
    ax.set_yticks([0, 1], list(domain.MODES))
    ax.set_title(f"(b) {task}, {dec}: alpha", fontsize=9)


def _stream(axes, stream: pd.DataFrame | None, acc: pd.DataFrame):
  """(e): the online arms' acceptance on the live stream (T = 1, per chunk, served by the draft of that moment);
  lines: the generic and offline white-box drafts on the held-out prompts (T = 1)."""
  for ax, task in zip(axes, dict.fromkeys(acc.task)):
    ax.set_title(f"(e) {task}: online acceptance over the query stream", fontsize=9)
    if not _usable(stream) or not (stream.task == task).any():
      plotting.no_data(ax, None)
      continue
    for box, sub in stream[stream.task == task].groupby("box", sort=False):
      for _, seed_df in sub.groupby("seed"):
        ax.plot(seed_df.queries, seed_df.alpha, lw=0.6, alpha=0.4, color="C0" if box == "white" else "C1")
      mean = sub.groupby("queries").alpha.mean()
      ax.plot(mean.index, mean.values, "o-", ms=3, color="C0" if box == "white" else "C1",
              label=f"online {box}-box (live, T=1)")
    ref = acc[(acc.task == task) & (acc.decoding == "T=1")]
    for model, style in ((domain.GENERIC, "k--"), (OFF_W, "k:")):
      r = ref[ref.model == model]
      if len(r):
        ax.axhline(float(r.alpha_hat.iloc[0]), ls=style[1:], color="k", lw=1, label=f"{model} (held-out, T=1)")
    ax.set_xlabel("queries served")
    ax.set_ylabel("acceptance alpha")
    ax.legend(fontsize=6)


def plot(tables: dict):
  import matplotlib.pyplot as plt
  df = tables.get(PANEL)
  if not _usable(df):
    return plotting.empty("Domain drafts (arXiv 2503.07807)")
  decs, tasks = plotting.decodings(df), list(dict.fromkeys(df.task))
  fig = plt.figure(figsize=(max(10.0, 3.2 * len(tasks) * len(decs)), 13.5), layout="constrained")
  top, mid, bottom = fig.subfigures(3, 1, height_ratios=[2.2, 1.0, 1.1])
  _bars(top.subplots(2, len(decs), squeeze=False), df)
  _grid2x2(np.atleast_1d(mid.subplots(1, len(tasks) * len(decs), squeeze=False)[0]), df)
  _stream(np.atleast_1d(bottom.subplots(1, len(tasks), squeeze=False)[0]), tables.get(STREAM), df)
  fig.suptitle("Domain drafts (arXiv 2503.07807): generic vs distilled, offline / online x white / black-box "
               "(95% intervals over seeds x prompts)")
  return fig


def key_numbers(tables: dict):
  """alpha (and tau) per draft, then what each arm used (examples, updates of B rows, target tokens seen)."""
  df = tables[PANEL]
  alpha = figure.wide(df, ["task", "decoding", "gamma"], "model", "alpha_hat")
  used = df.drop_duplicates(["task", "model"])[["task", "model", *[c for c in BUDGET if c in df]]]
  return [alpha, used.reset_index(drop=True)]


def summary(tables: dict) -> str:
  df = tables.get(PANEL)
  if not _usable(df) or "updates" not in df:
    return ""
  d = df[df["mode"] != "none"]
  if d.empty:
    return ""
  toks = d.groupby("model").tokens_seen.mean()
  return (f"Domain drafts: every arm starts from the generic draft and uses N = {int(d.examples.max())} examples "
          f"(queries), {int(d.updates.max())} updates of {int(d.batch.max())} rows; target tokens trained on per "
          f"arm {int(toks.min())}-{int(toks.max())} (they differ only through the response lengths).")


SPEC = figure.FigureSpec(
    name=NAME, title="Domain drafts: generic vs distilled, offline / online, white / black-box",
    paper="Domain drafts (arXiv 2503.07807): offline vs online, white-box vs black-box", notebook="domain_drafts",
    panels=(PANEL, STREAM), build=build, plot=plot, claims=(D1, D2, D2B, D3), key_numbers=key_numbers,
    summary=summary)
