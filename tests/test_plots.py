"""Every plot function on small synthetic tables writes a non-empty PNG and PDF."""
import pandas as pd
import pytest

from dsrepro import plots

from _synthetic import tables


@pytest.mark.parametrize("nan_scores", [False, True])
@pytest.mark.parametrize("name", sorted(plots.PLOTS))
def test_plot_writes_png_and_pdf(tmp_path, name, nan_scores):
  df = tables(nan_scores=nan_scores)[name]
  paths = plots.PLOTS[name](df, tmp_path)
  assert [p.name for p in paths] == [f"{name}.png", f"{name}.pdf"]
  for p in paths:
    assert p.exists() and p.stat().st_size > 1000, p
  assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in paths)  # no temporary files left


def test_fig3_combined_and_single_rows(tmp_path):
  t = tables()
  paths = plots.fig3(t["fig3a"], t["fig3b"], t["fig3c"], tmp_path)
  assert all(p.stat().st_size > 1000 for p in paths)
  # one row per table (e.g. smoke profile: one gamma, one step) must still plot
  for name in ("fig1", "fig2", "fig3a", "fig3c", "fig4", "fig6"):
    df = t[name].groupby("decoding").head(1) if name != "fig2" else t[name].head(2)
    assert all(p.stat().st_size > 1000 for p in plots.PLOTS[name](df, tmp_path / "one"))


def test_empty_frame_still_draws(tmp_path):
  for name, fn in plots.PLOTS.items():
    assert all(p.stat().st_size > 0 for p in fn(pd.DataFrame(), tmp_path))


def test_spearman():
  assert plots.spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
  assert plots.spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
  assert pd.isna(plots.spearman([1, 2], [1, 2]))
