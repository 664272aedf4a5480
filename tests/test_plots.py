"""Every figure's plot, on small synthetic tables, draws and saves a non-empty PNG and PDF (no temporary files)."""
import matplotlib.figure
import matplotlib.pyplot as plt
import pandas as pd
import pytest

from dsrepro.repro import figure, plotting
from dsrepro.repro.figures import FIGURES

from _synthetic import by_figure, tables


@pytest.mark.parametrize("nan_scores", [False, True])
@pytest.mark.parametrize("name", list(FIGURES))
def test_plot_writes_png_and_pdf(tmp_path, name, nan_scores):
  t = by_figure(tables(nan_scores=nan_scores))[name]
  fig = FIGURES[name].plot(t)
  assert isinstance(fig, matplotlib.figure.Figure)
  plt.close(fig)
  paths = figure.draw(FIGURES[name], t, tmp_path)
  assert [p.name for p in paths] == [f"{name}.png", f"{name}.pdf"]
  for p in paths:
    assert p.exists() and p.stat().st_size > 1000, p
  assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in paths)  # no temporary files left


def test_single_rows_still_plot(tmp_path):
  """One row per table (e.g. smoke profile: one gamma, one step) must still plot."""
  t = tables()
  for name in ("fig1", "fig2", "fig3a", "fig3c", "fig4", "fig6"):
    t[name] = t[name].groupby("decoding").head(1) if name != "fig2" else t[name].head(2)
  for name, spec in FIGURES.items():
    assert all(p.stat().st_size > 1000 for p in figure.draw(spec, by_figure(t)[name], tmp_path / "one"))


def test_empty_frames_still_draw(tmp_path):
  for name, spec in FIGURES.items():
    empty = {p: pd.DataFrame() for p in spec.panels}
    assert all(p.stat().st_size > 0 for p in plotting.save(spec.plot(empty), tmp_path, name))
