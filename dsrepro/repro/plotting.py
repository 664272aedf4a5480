"""Drawing helpers shared by the figure modules (``dsrepro.repro.figures.*``): every figure's ``plot`` returns a
matplotlib Figure and :func:`save` writes it as ``<name>.png`` (dpi 150) and ``<name>.pdf``. No backend is chosen
here: matplotlib picks a non-interactive one without a display, and the inline one in Jupyter.

Quality columns that are all NaN (e.g. tasks without a task metric, such as LM1B) are skipped in favour of
``target_ll``, the mean per-token log-likelihood of the outputs under the target (scale-robust), and the axis
label says so.
"""
from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from dsrepro.kd.recipes import ALGORITHMS, LABELS, SFT
from dsrepro.runs import atomic_path

DPI = 150
ALGO_ORDER = (SFT, *ALGORITHMS)
LL_LABEL = "target log-lik. (nats/token)"
SCORE_LABEL = "task score (accuracy / ROUGE-2 / BLEU)"


def save(fig, out_dir, name: str) -> list[Path]:
  """Write ``fig`` as ``<out_dir>/<name>.png`` and ``.pdf`` (atomically, no dates: same figure, same bytes)."""
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


def empty(title: str):
  """A figure that says there is no data."""
  fig, ax = plt.subplots(figsize=(5, 2))
  ax.axis("off")
  ax.text(0.5, 0.5, f"{title}\n(no data)", ha="center", va="center")
  return fig


def has(df: pd.DataFrame, col: str) -> bool:
  return col in df and bool(df[col].notna().any())


def order(values, first=ALGO_ORDER) -> list:
  """The distinct ``values``: those in ``first`` in that order, then the others in order of appearance."""
  vals = list(dict.fromkeys(values))
  return [v for v in first if v in vals] + [v for v in vals if v not in first]


def label(name: str) -> str:
  return LABELS.get(name, name)


def grid(n: int, w: float = 5.0, h: float = 4.0, ncols: int | None = None):
  ncols = ncols or n
  nrows = -(-n // ncols)
  fig, axes = plt.subplots(nrows, ncols, figsize=(w * ncols, h * nrows), squeeze=False, layout="constrained")
  for ax in axes.flat[n:]:
    ax.axis("off")
  return fig, list(axes.flat[:n])


def decodings(df: pd.DataFrame) -> list[str]:
  return sorted(df["decoding"].unique(), key=lambda d: (d != "greedy", d))


def identity(ax, x, y):
  vals = np.concatenate([np.asarray(x, float), np.asarray(y, float)])
  vals = vals[np.isfinite(vals)]
  lo, hi = (vals.min(), vals.max()) if len(vals) else (0.0, 1.0)
  pad = 0.05 * (hi - lo or 1.0)
  ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], "k--", lw=1, label="y = x")


def bars(ax, df, x: str, hue: str, y: str, hue_order, labels=None, err: tuple[str, str] | None = None):
  """Grouped bars of ``y`` per ``x`` group, one bar per ``hue``; ``err`` = (lo column, hi column) draws the
  interval as an error bar when both columns are present. Returns {(x, hue): bar}."""
  xs = list(dict.fromkeys(df[x]))
  width = 0.8 / max(1, len(hue_order))
  out = {}
  for j, h in enumerate(hue_order):
    sub = df[df[hue] == h].set_index(x)
    vals = [float(sub[y].loc[v]) if v in sub.index else np.nan for v in xs]
    pos = np.arange(len(xs)) + (j - (len(hue_order) - 1) / 2) * width
    yerr = None
    if err and all(c in sub for c in err):
      lo = np.array([float(sub[err[0]].loc[v]) if v in sub.index else np.nan for v in xs])
      hi = np.array([float(sub[err[1]].loc[v]) if v in sub.index else np.nan for v in xs])
      yerr = np.nan_to_num(np.stack([np.asarray(vals) - lo, hi - np.asarray(vals)]).clip(0))
    rects = ax.bar(pos, vals, width, label=(labels or {}).get(h, label(h)), yerr=yerr, capsize=2,
                   error_kw=dict(lw=0.8))
    for v, r in zip(xs, rects):
      out[(v, h)] = r
  ax.set_xticks(np.arange(len(xs)), xs)
  return out


def annotate(ax, rect, text, **kw):
  h = rect.get_height()
  if np.isfinite(h):
    ax.annotate(text, (rect.get_x() + rect.get_width() / 2, h), xytext=(0, 2), textcoords="offset points",
                ha="center", va="bottom", fontsize=7, **kw)


def table_figure(df: pd.DataFrame, title: str):
  """A table drawn as a figure (floats with 3 significant digits)."""
  if df.empty:
    return empty(title)
  cells = [[f"{v:.3g}" if isinstance(v, (float, np.floating)) else str(v) for v in row]
           for row in df.itertuples(index=False)]
  fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(df.columns)), 0.8 + 0.25 * (len(df) + 1)))
  ax.axis("off")
  tab = ax.table(cellText=cells, colLabels=list(df.columns), loc="center", cellLoc="center")
  tab.auto_set_font_size(False)
  tab.set_fontsize(7)
  tab.scale(1, 1.2)
  ax.set_title(title)
  return fig


def no_data(ax, df) -> bool:
  """Write "no data" on an empty panel; True when the caller should stop."""
  if df is None or df.empty:
    ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
    return True
  return False
