"""The domain-draft study (arXiv 2503.07807), figures (c) and (d): which data to distill a domain draft on --
historical queries, curated domain data or synthetic (target-written) prompts at equal example counts -- and data
scaling, acceptance vs the number of training examples (same updates at every size: equal compute, more data),
per domain and white / black-box. Terms and budgets: ``dsrepro.repro.domain``."""
from __future__ import annotations

import numpy as np

from dsrepro.repro import domain, figure, plotting, stats
from dsrepro.repro.figures import domain as drafts_fig
from dsrepro.repro.profiles import Profile

NAME = "domain_data"
SCEN, SCALE = "domain_scenarios", "domain_scaling"
D4 = figure.ClaimDef(
    "domain.D4", NAME, "D4: synthetic data reaches most of the acceptance historical user queries give",
    "synthetic data reaches 80-93% of the acceptance of training on historical queries (arXiv 2503.07807)",
    "fraction = alpha(offline, synthetic prompts) / alpha(offline, historical queries) at equal N, per domain x "
    "decoding x white/black-box", threshold=0.8)
D5 = figure.ClaimDef(
    "domain.D5", NAME, "D5: acceptance rises with the amount of training data in every domain",
    "data-scaling trends hold across domains (arXiv 2503.07807)",
    "least-squares slope of alpha vs log2(training examples) over the scaling sizes (same U updates each), per "
    "domain x decoding x white/black-box (alpha per doubling)")


def _div(a: float, b: float) -> float:
  return float(a) / float(b) if b and np.isfinite(b) else float("nan")


def _slope(sizes, labels):
  """Least-squares slope of alpha on log2(examples); exactly 0 when alpha does not change."""
  dx = np.log2(np.asarray(sizes, float))
  dx = dx - dx.mean()

  def f(fields):
    y = np.asarray([figure.ALPHA(fields[k]) for k in labels])
    return float(np.sum(dx * (y - y[0])) / np.sum(dx * dx))
  return f


def build(p: Profile, root=None) -> dict:
  s = domain.settings(p)
  scen_rows, scale_rows, stat_rows = [], [], []
  for task in s.tasks:
    scen, scale = domain.scenario_recipes(s), domain.scaling_recipes(s)
    rows, arms = drafts_fig.arm_records(p, task, scen + scale, root)
    label = {r: r.label(s) for r in scen + scale}
    scen_labels, scale_labels = {label[r] for r in scen} | {domain.GENERIC}, {label[r] for r in scale}
    marker = float(np.mean([domain.dataset(p, task, "synthetic", seed, root).info["marker_rate"] for seed in s.seeds]))
    base = {(r["decoding"], r["box"]): r["alpha_hat"] for r in rows if r["model"] in scen_labels
            and r["scenario"] == "historical"}
    for r in rows:
      if r["model"] in scen_labels:
        hist = base.get((r["decoding"], r["box"]), np.nan)
        scen_rows.append({**r, "fraction_of_historical": _div(r["alpha_hat"], hist),
                          "marker_rate": marker if r["scenario"] == "synthetic" else np.nan})
      if r["model"] in scale_labels:
        scale_rows.append(r)
    for dec, a in arms.items():
      for box in domain.BOXES:
        cell = f"{task} {dec} {box}-box"
        syn, hist = (label[domain.Recipe("offline", box, sc, s.examples)] for sc in ("synthetic", "historical"))
        iv = stats.bootstrap(lambda f: figure.ALPHA(f[syn]) / figure.ALPHA(f[hist]), {syn: a[syn], hist: a[hist]},
                             seed=p.seed)
        stat_rows.append(figure.stats_row(D4, cell, iv, a[syn].n_seeds, a[syn].n_prompts))
        sized = [label[domain.Recipe("offline", box, "historical", n)] for n in s.sizes]
        iv = stats.bootstrap(_slope(s.sizes, sized), {k: a[k] for k in sized}, seed=p.seed)
        stat_rows.append(figure.stats_row(D5, cell, iv, a[sized[0]].n_seeds, a[sized[0]].n_prompts))
  return {SCEN: figure.table(scen_rows), SCALE: figure.table(scale_rows), f"{NAME}_stats": figure.table(stat_rows)}


def _scenarios(axes, df):
  """(c): alpha per domain, one bar per data scenario x box (generic as a bar too); annotation: fraction of the
  historical-queries alpha of the same box."""
  df = df.assign(arm=[m if b == "none" else f"{b}-box, {sc}" for m, b, sc in zip(df.model, df.box, df.scenario)])
  order = [domain.GENERIC] + [f"{b}-box, {sc}" for b in domain.BOXES for sc in domain.SCENARIOS]
  order = [o for o in order if o in set(df.arm)]
  for ax, dec in zip(axes, plotting.decodings(df)):
    sub = df[df.decoding == dec]
    bars = plotting.bars(ax, sub, "task", "arm", "alpha_hat", order, labels={o: o for o in order},
                         err=("alpha_lo", "alpha_hi"))
    for r in sub.itertuples():
      if r.scenario in ("curated", "synthetic") and (r.task, r.arm) in bars and np.isfinite(r.fraction_of_historical):
        plotting.annotate(ax, bars[(r.task, r.arm)], f"{100 * r.fraction_of_historical:.0f}%")
    ax.set_title(f"(c) data scenarios at N = {int(sub.examples.max())} examples, {dec} "
                 "(annotation: % of historical)", fontsize=9)
    ax.set_ylabel("acceptance alpha")
    ax.set_ylim(0, 1.35 * max(1e-6, float(np.nanmax(sub.get("alpha_hi", sub.alpha_hat).to_numpy(float)))))
    ax.legend(fontsize=6, ncol=2, loc="upper left")


def _scaling(axes, df, scen):
  """(d): alpha vs training examples (log2 axis), white / black-box, with intervals; the generic draft dashed."""
  cells = [(t, d) for t in dict.fromkeys(df.task) for d in plotting.decodings(df)]
  for ax, (task, dec) in zip(axes, cells):
    sub = df[(df.task == task) & (df.decoding == dec)]
    for i, (box, b) in enumerate(sub.groupby("box", sort=False)):
      b = b.sort_values("examples")
      err = np.stack([b.alpha_hat - b.alpha_lo, b.alpha_hi - b.alpha_hat]).clip(0) if "alpha_lo" in b else None
      ax.errorbar(b.examples, b.alpha_hat, yerr=err, fmt="o-", ms=3, capsize=2, color=f"C{i}",
                  label=f"offline {box}-box")
    g = scen[(scen.task == task) & (scen.decoding == dec) & (scen.model == domain.GENERIC)] if scen is not None \
        else scen
    if g is not None and len(g):
      ax.axhline(float(g.alpha_hat.iloc[0]), ls="--", color="k", lw=1, label=domain.GENERIC)
    ax.set_xscale("log", base=2)
    ax.set_xticks(sorted(set(sub.examples)), [str(int(n)) for n in sorted(set(sub.examples))])
    ax.minorticks_off()
    ax.set_xlabel("training examples (same updates at every size)")
    ax.set_ylabel("acceptance alpha")
    ax.set_title(f"(d) {task}, {dec}: data scaling", fontsize=9)
    ax.legend(fontsize=6)


def plot(tables: dict):
  import matplotlib.pyplot as plt
  scen, scale = tables.get(SCEN), tables.get(SCALE)
  if (scen is None or scen.empty) and (scale is None or scale.empty):
    return plotting.empty("Domain drafts: data (arXiv 2503.07807)")
  ref = scen if scen is not None and not scen.empty else scale
  decs, tasks = plotting.decodings(ref), list(dict.fromkeys(ref.task))
  fig = plt.figure(figsize=(max(10.0, 4.0 * len(tasks) * len(decs) / 1.5), 8.5), layout="constrained")
  top, bottom = fig.subfigures(2, 1)
  axes = top.subplots(1, len(decs), squeeze=False)[0]
  if scen is not None and not scen.empty:
    _scenarios(axes, scen)
  else:
    [plotting.no_data(ax, None) for ax in axes]
  axes = bottom.subplots(1, len(tasks) * len(decs), squeeze=False)[0]
  if scale is not None and not scale.empty:
    _scaling(axes, scale, scen)
  else:
    [plotting.no_data(ax, None) for ax in axes]
  fig.suptitle("Domain drafts (arXiv 2503.07807): which data, and how much (95% intervals over seeds x prompts)")
  return fig


def key_numbers(tables: dict):
  """The synthetic / curated fractions of the historical-queries alpha (paper: synthetic 80-93%), and alpha per
  size."""
  scen, scale = tables[SCEN], tables[SCALE]
  frac = scen[scen.box != "none"][["task", "decoding", "box", "scenario", "alpha_hat", "fraction_of_historical",
                                   "marker_rate", "examples", "updates", "tokens_seen"]]
  sizes = figure.wide(scale.assign(arm=scale.box + "-box"), ["task", "decoding", "examples"], "arm", "alpha_hat")
  return [frac.reset_index(drop=True), sizes]


SPEC = figure.FigureSpec(
    name=NAME, title="Domain drafts: data scenarios and data scaling",
    paper="Domain drafts (arXiv 2503.07807): historical / curated / synthetic data, data scaling",
    notebook="domain_data", panels=(SCEN, SCALE), build=build, plot=plot, claims=(D4, D5), key_numbers=key_numbers)
