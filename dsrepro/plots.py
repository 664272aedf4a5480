"""Matplotlib drawings of the tables of :mod:`dsrepro.figures`: one function per figure, same name as there.

Every function takes the tidy DataFrame that ``figures.<name>`` returns (or reads back from its CSV) and an output
directory, writes ``<out_dir>/<name>.png`` (dpi 150) and ``<out_dir>/<name>.pdf`` and returns both paths. Quality
columns that are all NaN (e.g. tasks without a task metric, such as LM1B) are skipped in favour of ``target_ll``,
the mean per-token log-likelihood of the outputs under the target (scale-robust), and the axis label says so.
"""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.colors import TwoSlopeNorm  # noqa: E402

from dsrepro.runs import atomic_path  # noqa: E402

DPI = 150
ALGO_ORDER = ("SFT", "supervised_kd", "seqkd", "imitkd", "f_distill", "gkd")
ALGO_LABEL = {"SFT": "SFT draft", "supervised_kd": "SupervisedKD", "seqkd": "SeqKD", "imitkd": "ImitKD",
              "f_distill": "f-Distill", "gkd": "GKD (on-policy)"}
CURVES = ("Raw", "Distilled", "Speculative", "DistillSpec")
LL_LABEL = "target log-lik. (nats/token)"
SCORE_LABEL = "task score (accuracy / ROUGE-2 / BLEU)"


def _save(fig, out_dir, name: str) -> list[Path]:
  out = Path(out_dir)
  out.mkdir(parents=True, exist_ok=True)
  paths = [out / f"{name}.png", out / f"{name}.pdf"]
  try:
    with atomic_path(paths[0]) as tmp:
      fig.savefig(tmp, dpi=DPI, bbox_inches="tight", metadata={"Software": None})
    with atomic_path(paths[1]) as tmp:  # no dates: the same figure gives the same bytes
      fig.savefig(tmp, bbox_inches="tight", metadata={"CreationDate": None, "Producer": None})
  finally:
    plt.close(fig)
  return paths


def _empty(out_dir, name: str, title: str) -> list[Path]:
  fig, ax = plt.subplots(figsize=(5, 2))
  ax.axis("off")
  ax.text(0.5, 0.5, f"{title}\n(no data)", ha="center", va="center")
  return _save(fig, out_dir, name)


def _has(df: pd.DataFrame, col: str) -> bool:
  return col in df and bool(df[col].notna().any())


def _order(values, order=ALGO_ORDER) -> list:
  vals = list(dict.fromkeys(values))
  return [v for v in order if v in vals] + [v for v in vals if v not in order]


def _label(name: str) -> str:
  return ALGO_LABEL.get(name, name)


def _grid(n: int, w: float = 5.0, h: float = 4.0, ncols: int | None = None):
  ncols = ncols or n
  nrows = -(-n // ncols)
  fig, axes = plt.subplots(nrows, ncols, figsize=(w * ncols, h * nrows), squeeze=False, layout="constrained")
  for ax in axes.flat[n:]:
    ax.axis("off")
  return fig, list(axes.flat[:n])


def _decodings(df: pd.DataFrame) -> list[str]:
  return sorted(df["decoding"].unique(), key=lambda d: (d != "greedy", d))


def _identity(ax, x, y):
  vals = np.concatenate([np.asarray(x, float), np.asarray(y, float)])
  vals = vals[np.isfinite(vals)]
  lo, hi = (vals.min(), vals.max()) if len(vals) else (0.0, 1.0)
  pad = 0.05 * (hi - lo or 1.0)
  ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], "k--", lw=1, label="y = x")


def spearman(x, y) -> float:
  """Spearman rank correlation (average ranks for ties); nan with < 3 finite pairs or a constant input."""
  d = pd.DataFrame({"x": np.asarray(x, float), "y": np.asarray(y, float)}).dropna()
  if len(d) < 3 or d.x.nunique() < 2 or d.y.nunique() < 2:
    return float("nan")
  return float(np.corrcoef(d.x.rank(), d.y.rank())[0, 1])


def _bars(ax, df, x: str, hue: str, y: str, hue_order, labels=None):
  """Grouped bars of ``y`` per ``x`` group, one bar per ``hue``; returns {(x, hue): bar}."""
  xs = list(dict.fromkeys(df[x]))
  width = 0.8 / max(1, len(hue_order))
  bars = {}
  for j, h in enumerate(hue_order):
    sub = df[df[hue] == h].set_index(x)
    vals = [float(sub[y].loc[v]) if v in sub.index else np.nan for v in xs]
    pos = np.arange(len(xs)) + (j - (len(hue_order) - 1) / 2) * width
    rects = ax.bar(pos, vals, width, label=(labels or {}).get(h, _label(h)))
    for v, r in zip(xs, rects):
      bars[(v, h)] = r
  ax.set_xticks(np.arange(len(xs)), xs)
  return bars


def _annotate(ax, rect, text, **kw):
  h = rect.get_height()
  if np.isfinite(h):
    ax.annotate(text, (rect.get_x() + rect.get_width() / 2, h), xytext=(0, 2), textcoords="offset points",
                ha="center", va="bottom", fontsize=7, **kw)


# ------------------------------------------------------------------------------------------------ tables


def _table_fig(df: pd.DataFrame, out_dir, name: str, title: str) -> list[Path]:
  if df.empty:
    return _empty(out_dir, name, title)
  cells = [[f"{v:.3g}" if isinstance(v, (float, np.floating)) else str(v) for v in row]
           for row in df.itertuples(index=False)]
  fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(df.columns)), 0.8 + 0.25 * (len(df) + 1)))
  ax.axis("off")
  tab = ax.table(cellText=cells, colLabels=list(df.columns), loc="center", cellLoc="center")
  tab.auto_set_font_size(False)
  tab.set_fontsize(7)
  tab.scale(1, 1.2)
  ax.set_title(title)
  return _save(fig, out_dir, name)


def table_d1(df: pd.DataFrame, out_dir) -> list[Path]:
  """Paper Table D.1: alpha, tau and speedups per task x model x decoding x gamma, as a table figure."""
  cols = [c for c in ("task", "model", "decoding", "gamma", "alpha_hat", "tau", "c", "speedup_c", "speedup_wall")
          if c in df]
  t = df[cols].sort_values([c for c in ("task", "decoding", "gamma", "model") if c in cols])
  return _table_fig(t, out_dir, "table_d1", "Table D.1: acceptance alpha, block efficiency tau, relative latency c "
                    "and speedups (x over target-only)")


def adaspec_table(df: pd.DataFrame, out_dir) -> list[Path]:
  """AdaSPEC vs DistillSpec: acceptance rate (%) per task, grouped bars, one panel per decoding."""
  if df.empty:
    return _empty(out_dir, "adaspec_table", "AdaSPEC vs DistillSpec")
  decs = _decodings(df)
  fig, axes = _grid(len(decs), w=max(5.0, 2.5 * df.task.nunique()), h=4.0)
  models = list(dict.fromkeys(df.model))
  for ax, dec in zip(axes, decs):
    sub = df[df.decoding == dec].assign(alpha_pct=lambda d: 100 * d.alpha_hat)
    bars = _bars(ax, sub, "task", "model", "alpha_pct", models, labels={m: m for m in models})
    for r in bars.values():
      _annotate(ax, r, f"{r.get_height():.1f}")
    ax.set_title(f"{dec}, gamma = {int(sub.gamma.iloc[0])}")
    ax.set_ylabel("token acceptance rate alpha (%)")
    ax.set_xlabel("task")
    ax.set_ylim(0, 1.35 * max(1.0, float(np.nanmax(sub.alpha_pct.to_numpy(float)))))
    ax.legend(fontsize=7, loc="upper left", ncol=2)
  fig.suptitle("AdaSPEC vs DistillSpec: acceptance rate of the draft (paper: AdaSPEC Table)")
  return _save(fig, out_dir, "adaspec_table")


# ------------------------------------------------------------------------------------------------ Fig. 1, 2


def fig1(df: pd.DataFrame, out_dir) -> list[Path]:
  """Paper Fig. 1: speedup of SD with the SFT vs the DistillSpec draft per task (best gamma), one panel per
  decoding; bars = tau / (c gamma + 1), diamonds = measured batch-1 wall-time speedup, improvement % annotated."""
  if df.empty:
    return _empty(out_dir, "fig1", "Fig. 1")
  decs = _decodings(df)
  fig, axes = _grid(len(decs), w=max(4.5, 2.0 * df.task.nunique()), h=4.0)
  for ax, dec in zip(axes, decs):
    sub = df[df.decoding == dec]
    bars = _bars(ax, sub, "task", "model", "speedup_c", _order(sub.model, ("SFT", "DistillSpec")),
                 labels={"SFT": "SFT draft", "DistillSpec": "DistillSpec draft"})
    if _has(sub, "speedup_wall"):
      for (task, model), r in bars.items():
        row = sub[(sub.task == task) & (sub.model == model)]
        ax.plot(r.get_x() + r.get_width() / 2, row.speedup_wall.iloc[0], "kD", ms=4,
                label="measured wall time" if (task, model) == next(iter(bars)) else None)
    for task in dict.fromkeys(sub.task):
      r = bars.get((task, "DistillSpec"))
      imp = sub[sub.task == task].improvement_pct.iloc[0]
      if r is not None and np.isfinite(imp):
        _annotate(ax, r, f"{imp:+.0f}%", fontweight="bold")
    ax.axhline(1.0, color="grey", lw=0.8, ls=":")
    ax.set_ylim(0, 1.25 * np.nanmax([r.get_height() for r in bars.values()] + [1.0]))
    ax.set_title(dec)
    ax.set_xlabel("task")
    ax.set_ylabel("speedup over target-only decoding (x)\nbars: tau / (c gamma + 1)")
    ax.legend(fontsize=7, loc="upper left", ncol=3)
  fig.suptitle("Fig. 1: DistillSpec vs SFT draft, speedup at the best gamma (annotation: improvement)")
  return _save(fig, out_dir, "fig1")


def fig2(df: pd.DataFrame, out_dir) -> list[Path]:
  """Paper Fig. 2: block efficiency tau of each KD algorithm's draft per task; the SFT draft is a dashed line."""
  if df.empty:
    return _empty(out_dir, "fig2", "Fig. 2")
  algos = [m for m in _order(df.model) if m != "SFT"]
  fig, ax = plt.subplots(figsize=(max(6.0, 2.5 * df.task.nunique()), 4.2), layout="constrained")
  bars = _bars(ax, df, "task", "model", "tau", algos)
  tasks = list(dict.fromkeys(df.task))
  for i, task in enumerate(tasks):
    sft = df[(df.task == task) & (df.model == "SFT")].tau
    if len(sft):
      ax.hlines(sft.iloc[0], i - 0.45, i + 0.45, colors="k", linestyles="--", label="SFT draft" if i == 0 else None)
    for a in algos:
      row = df[(df.task == task) & (df.model == a)]
      if (task, a) in bars and len(row) and "tau_gain_pct" in row:
        _annotate(ax, bars[(task, a)], f"{row.tau_gain_pct.iloc[0]:+.0f}%")
  ax.set_xlabel("task")
  ax.set_ylabel("block efficiency tau (tokens / target call)")
  ax.set_ylim(0, 1.3 * np.nanmax(df.tau.to_numpy(float)))
  ax.legend(fontsize=7, ncol=3, loc="upper left")
  ax.set_title(f"Fig. 2: KD algorithms, {df.decoding.iloc[0]}, gamma = {int(df.gamma.iloc[0])} "
               "(annotation: tau gain over SFT)")
  return _save(fig, out_dir, "fig2")


# ------------------------------------------------------------------------------------------------ Fig. 3


def _draw_fig3a(ax, df, metric="alpha"):
  sub = df[df.metric == metric] if "metric" in df else df
  if _no_data(ax, sub):
    return
  g = sorted(sub.gamma.unique())[len(sub.gamma.unique()) // 2]
  styles = {d: s for d, s in zip(_decodings(sub), ("-", "--", ":"))}
  for i, model in enumerate(_order(sub.model)):  # colour = algorithm, line style = decoding
    for dec, ls in styles.items():
      s = sub[(sub.model == model) & (sub.decoding == dec) & (sub.gamma == g)].sort_values("step")
      if len(s):
        ax.plot(s.step, s.value, ls, color=f"C{i}", marker="o", ms=3, label=f"{_label(model)} ({dec})")
  ax.set_xlabel("distillation step (0 = SFT draft)")
  ax.set_ylabel("acceptance rate alpha" if metric == "alpha" else "block efficiency tau")
  ax.set_title(f"(a) {metric} during distillation, gamma = {g}")
  ax.legend(fontsize=6, handlelength=4)


def _no_data(ax, df) -> bool:
  """Write "no data" on an empty panel; True when the caller should stop."""
  if df.empty:
    ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
  return df.empty


def _draw_fig3b(ax, df):
  if _no_data(ax, df):
    return
  for task in dict.fromkeys(df.task):
    s = df[df.task == task]
    ax.scatter(s.tau_sft, s.tau_distilled, s=14, alpha=0.7, label=task)
  _identity(ax, df.tau_sft, df.tau_distilled)
  above, equal = (df.tau_distilled > df.tau_sft).mean(), (df.tau_distilled == df.tau_sft).mean()
  ax.set_xlabel("tau with the SFT draft")
  ax.set_ylabel("tau with the DistillSpec draft")
  ax.set_title(f"(b) per example: {100 * above:.0f}% above y = x ({100 * equal:.0f}% on it)")
  ax.legend(fontsize=7)


def _draw_fig3c(ax, df):
  if _no_data(ax, df):
    return
  markers = {d: m for d, m in zip(_decodings(df), "os^v")}
  colors = {m: f"C{i}" for i, m in enumerate(_order(df.model))}
  for model, c in colors.items():
    for dec, mk in markers.items():
      s = df[(df.model == model) & (df.decoding == dec)]
      if len(s):
        ax.scatter(s.tau_theory, s.tau, c=c, marker=mk, s=22, label=f"{_label(model)} ({dec})")
  _identity(ax, df.tau_theory, df.tau)
  ax.set_xlabel("theoretical tau = (1 - alpha^(gamma+1)) / (1 - alpha)")
  ax.set_ylabel("empirical tau (tokens / target call)")
  ax.set_title(f"(c) theory vs measurement, Spearman rho = {spearman(df.tau_theory, df.tau):.2f}")
  ax.legend(fontsize=6, ncol=2)


def fig3a(df: pd.DataFrame, out_dir) -> list[Path]:
  """Paper Fig. 3a: acceptance rate alpha over distillation steps, one line per algorithm (and decoding)."""
  fig, ax = plt.subplots(figsize=(6, 4.2), layout="constrained")
  _draw_fig3a(ax, df)
  return _save(fig, out_dir, "fig3a")


def fig3b(df: pd.DataFrame, out_dir) -> list[Path]:
  """Paper Fig. 3b: per-example tau, SFT vs DistillSpec draft, with y = x and the fraction above it."""
  fig, ax = plt.subplots(figsize=(5, 4.5), layout="constrained")
  _draw_fig3b(ax, df)
  return _save(fig, out_dir, "fig3b")


def fig3c(df: pd.DataFrame, out_dir) -> list[Path]:
  """Paper Fig. 3c: theoretical vs empirical tau, colour = draft, marker = decoding."""
  fig, ax = plt.subplots(figsize=(6, 4.8), layout="constrained")
  _draw_fig3c(ax, df)
  return _save(fig, out_dir, "fig3c")


def fig3(df_a: pd.DataFrame, df_b: pd.DataFrame, df_c: pd.DataFrame, out_dir) -> list[Path]:
  """Paper Fig. 3, the three panels side by side (fig3.png / fig3.pdf)."""
  fig, axes = plt.subplots(1, 3, figsize=(17, 4.8), layout="constrained")
  _draw_fig3a(axes[0], df_a)
  _draw_fig3b(axes[1], df_b)
  _draw_fig3c(axes[2], df_c)
  fig.suptitle("Fig. 3: draft / target alignment")
  return _save(fig, out_dir, "fig3")


# ------------------------------------------------------------------------------------------------ Fig. 4


def fig4(df: pd.DataFrame, out_dir) -> list[Path]:
  """Paper Fig. 4: tau improvement (%) over the SFT draft for every data source x divergence, one heatmap per
  task x decoding (diverging colormap centred at 0, cells annotated, best cell boxed)."""
  if df.empty:
    return _empty(out_dir, "fig4", "Fig. 4")
  panels = [(t, d) for t in dict.fromkeys(df.task) for d in _decodings(df[df.task == t])]
  fig, axes = _grid(len(panels), w=4.6, h=3.8, ncols=min(len(panels), 2))
  lim = float(np.nanmax(np.abs(df.improvement_pct))) if df.improvement_pct.notna().any() else 1.0
  norm = TwoSlopeNorm(0.0, -(lim or 1.0), lim or 1.0)
  data_order = _order(df.data, ("ground_truth", "student", "teacher", "teacher+student"))
  div_order = _order(df.divergence, ("fkl", "jsd", "rkl", "tvd"))
  im = None
  for ax, (task, dec) in zip(axes, panels):
    sub = df[(df.task == task) & (df.decoding == dec)]
    mat = sub.pivot_table(index="data", columns="divergence", values="improvement_pct").reindex(
        index=data_order, columns=div_order)
    im = ax.imshow(mat.values, cmap="RdBu", norm=norm, aspect="auto")
    for i in range(mat.shape[0]):
      for j in range(mat.shape[1]):
        v = mat.values[i, j]
        ax.text(j, i, "n/a" if np.isnan(v) else f"{v:+.1f}", ha="center", va="center", fontsize=8,
                color="white" if np.isfinite(v) and abs(v) > 0.6 * lim else "black")
    if np.isfinite(mat.values).any():
      i, j = np.unravel_index(np.nanargmax(mat.values), mat.shape)
      ax.add_patch(plt.Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, ec="k", lw=2))
    ax.set_xticks(range(len(div_order)), [d.upper() for d in div_order])
    ax.set_yticks(range(len(data_order)), data_order)
    ax.set_xlabel("divergence")
    ax.set_ylabel("training data source")
    if len(panels) > 1:
      ax.label_outer()
    ax.set_title(f"{task}, {dec}, gamma = {int(sub.gamma.iloc[0])}")
  fig.colorbar(im, ax=axes, label="tau improvement over SFT draft (%)", shrink=0.8)
  fig.suptitle("Fig. 4: data source x divergence (box: best cell)")
  return _save(fig, out_dir, "fig4")


# ------------------------------------------------------------------------------------------------ Fig. 5


def _quality_cols(df, score: str, ll: str) -> list[tuple[str, str]]:
  if _has(df, score):
    return [(score, SCORE_LABEL), (ll, LL_LABEL)]
  return [(ll, LL_LABEL[:-1] + "; task score n/a)")]


def fig5a(df: pd.DataFrame, out_dir) -> list[Path]:
  """Paper Fig. 5a: each draft's own quality (task score, when the task has one, and log-likelihood of its
  outputs under the target) vs its block efficiency tau as a draft."""
  if df.empty:
    return _empty(out_dir, "fig5a", "Fig. 5a")
  cols = _quality_cols(df, "draft_task_score", "draft_target_ll")
  fig, axes = _grid(len(cols), w=5.2, h=4.2)
  for ax, (col, ylabel) in zip(axes, cols):
    for k, task in enumerate(dict.fromkeys(df.task)):
      s = df[df.task == task]
      ax.scatter(s.tau, s[col], s=30, c=f"C{k}", label=task)
      for r in s.itertuples():
        ax.annotate(_label(r.model), (r.tau, getattr(r, col)), xytext=(3, 3), textcoords="offset points",
                    fontsize=6)
    ax.set_xlabel(f"tau as a draft (greedy, gamma = {int(df.gamma.iloc[0])})")
    ax.set_ylabel(f"draft's own {ylabel}")
    ax.legend(fontsize=7)
  note = "" if _has(df, "draft_task_score") else " (task score n/a: log-likelihood shown)"
  fig.suptitle("Fig. 5a: draft quality vs draft efficiency" + note)
  return _save(fig, out_dir, "fig5a")


def fig5b(df: pd.DataFrame, out_dir) -> list[Path]:
  """Paper Fig. 5b: lossy SD, output quality vs relative latency (1 / speedup) as the lenience eps varies; one
  line per (lenience function, draft)."""
  if df.empty:
    return _empty(out_dir, "fig5b", "Fig. 5b")
  cols = _quality_cols(df, "task_score", "target_ll")
  fig, axes = _grid(len(cols), w=5.5, h=4.2)
  styles = {"SFT": "--", "DistillSpec": "-"}
  fns = list(dict.fromkeys(df.lenience_fn))
  for ax, (col, ylabel) in zip(axes, cols):
    for k, f in enumerate(fns):
      for model in _order(df.model, ("SFT", "DistillSpec")):
        s = df[(df.lenience_fn == f) & (df.model == model)].sort_values("eps")
        if s.empty:
          continue
        ax.plot(s.relative_latency, s[col], styles.get(model, ":"), marker="o", ms=3, c=f"C{k}",
                label=f"f_{f}, {_label(model)}")
        if k == 0 and model == "DistillSpec":
          for r in s.itertuples():
            ax.annotate(f"eps={r.eps:g}", (r.relative_latency, getattr(r, col)), fontsize=6, xytext=(3, -8),
                        textcoords="offset points")
    ax.set_xlabel("relative latency (1 / speedup; target-only = 1)")
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=6, handlelength=4)  # long enough to show the dashes
  fig.suptitle(f"Fig. 5b: lossy SD on {df.task.iloc[0]}, gamma = {int(df.gamma.iloc[0])}")
  return _save(fig, out_dir, "fig5b")


# ------------------------------------------------------------------------------------------------ Fig. 6


def fig6(df: pd.DataFrame, out_dir) -> list[Path]:
  """Paper Fig. 6: model garden quality vs relative latency (smallest Raw model = 1), curves Raw / Distilled /
  Speculative / DistillSpec with points labelled by model size; one column per decoding, one row per quality
  measure (task score when the task has one, log-likelihood under the largest model always)."""
  if df.empty:
    return _empty(out_dir, "fig6", "Fig. 6")
  decs = _decodings(df)
  cols = _quality_cols(df, "task_score", "target_ll")
  fig, axes = plt.subplots(len(cols), len(decs), figsize=(5.5 * len(decs), 4.2 * len(cols)), squeeze=False,
                           layout="constrained")
  sizes = list(dict.fromkeys(df["size"]))
  for i, (col, ylabel) in enumerate(cols):
    for j, dec in enumerate(decs):
      ax = axes[i, j]
      for k, curve in enumerate(_order(df.curve, CURVES)):
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
  return _save(fig, out_dir, "fig6")


PLOTS = {f.__name__: f for f in (table_d1, fig1, fig2, fig3a, fig3b, fig3c, fig4, fig5a, fig5b, fig6, adaspec_table)}
