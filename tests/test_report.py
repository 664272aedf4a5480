"""REPORT.md from synthetic CSVs: every figure's section, verdicts that follow the data, missing CSVs reported
honestly."""
import pandas as pd
import pytest

from dsrepro.repro import figure, report
from dsrepro.repro.figures import FIGURES

from _synthetic import by_figure, tables


def _write(out, flip=False, skip=(), nan_scores=False):
  for name, t in by_figure(tables(flip=flip, nan_scores=nan_scores)).items():
    if name not in skip:
      figure.save_tables(FIGURES[name], t, out)


def _verdicts(out, kind="claim"):
  return {c.id: c.verdict for c in report.claims(report.load_all(out), kind)}


def test_every_section_and_header(tmp_path):
  _write(tmp_path)
  (tmp_path / "fig2.png").write_bytes(b"png")
  text = report.build_report(tmp_path, "smoke", hardware="test-hw", command="dsrepro all --profile smoke").read_text()
  for spec in FIGURES.values():
    assert f"## {spec.title}" in text and spec.paper in text
  assert "profile: `smoke`" in text and "test-hw" in text and "dsrepro all --profile smoke" in text
  assert "![Fig. 2: KD algorithms](fig2.png)" in text
  assert "not run at this profile" not in text
  assert "Spearman" in text and "rule" in text


def test_verdicts_follow_the_data(tmp_path):
  _write(tmp_path / "agree")
  _write(tmp_path / "flip", flip=True)
  for kind in ("claim", "check"):
    agree, flip = _verdicts(tmp_path / "agree", kind), _verdicts(tmp_path / "flip", kind)
    assert agree and set(agree.values()) == {"reproduced"}, agree
    assert set(flip.values()) == {"contradicted"}, flip


def test_missing_csv_is_not_run(tmp_path):
  _write(tmp_path, skip=("fig4", "adaspec"))
  v = _verdicts(tmp_path)
  assert v["adaspec.more_acceptance"] == figure.NOT_RUN
  assert all(val == figure.NOT_RUN for k, val in v.items() if k.startswith("fig4."))
  text = report.build_report(tmp_path, "smoke", hardware="x").read_text()
  assert "_not run at this profile_ (no `fig4.csv`)" in text
  assert "_not run at this profile_ (no `adaspec_table.csv`)" in text


def test_empty_dir_and_nan_scores(tmp_path):
  text = report.build_report(tmp_path / "empty", "quick", hardware="x").read_text()
  assert text.count("not run at this profile") >= len(FIGURES)
  _write(tmp_path / "nan", nan_scores=True)
  assert "## Fig. 6: model garden" in report.build_report(tmp_path / "nan", "quick", hardware="x").read_text()


def test_cells_combine_and_inconclusive_intervals():
  """A claim over cells: any contradicted cell contradicts it; an interval across the threshold is inconclusive."""
  spec = FIGURES["adaspec"]
  c = spec.claims[0]
  df = pd.DataFrame([dict(claim=c.id, cell="gsm8k greedy", estimate=2.0, lo=1.0, hi=3.0, n_seeds=3, n_prompts=9),
                     dict(claim=c.id, cell="gsm8k T=1", estimate=0.5, lo=-1.0, hi=2.0, n_seeds=3, n_prompts=9)])
  assert spec.judge({spec.stats_panel: df})[0].verdict == "inconclusive"
  df.loc[1, ["lo", "hi"]] = [-2.0, -1.0]
  judged = spec.judge({spec.stats_panel: df})[0]
  assert judged.verdict == "contradicted" and "gsm8k greedy: 2 [1, 3]" in judged.ours
  assert spec.judge({spec.stats_panel: df.iloc[:1]})[0].verdict == "reproduced"


@pytest.mark.parametrize("scale, word", [(0.5, "not faster"), (2.0, "SD is faster"), (None, "sometimes faster")])
def test_cost_note_says_whether_sd_pays_off(tmp_path, scale, word):
  _write(tmp_path)
  t = pd.read_csv(tmp_path / "table_d1.csv")
  t["speedup_wall"] = [0.5, 2.0] * (len(t) // 2) + [2.0] * (len(t) % 2) if scale is None else scale
  figure.save_tables(FIGURES["table_d1"], {"table_d1": t}, tmp_path)
  text = report.build_report(tmp_path, "smoke").read_text()
  assert word in text and f"cost ratio c (draft / target call latency, in-loop, batch 1) is {t.c.min():.2f}" in text


def test_overview_puts_claims_against_profiles(tmp_path):
  _write(tmp_path / "smoke")
  report.build_report(tmp_path / "smoke", "smoke", hardware="x")
  _write(tmp_path / "quick", flip=True)
  report.build_report(tmp_path / "quick", "quick", hardware="x")
  (tmp_path / "cpu").mkdir()  # a profile folder with no results yet is not a column
  (tmp_path / "quick-seed1").mkdir()
  text = report.build_overview(tmp_path).read_text()
  header = next(line for line in text.splitlines() if line.startswith("| kind"))
  assert header.index("smoke") < header.index("quick") and "cpu" not in header and "seed1" not in header
  n_claims = sum(len(s.claims) for s in FIGURES.values())
  assert text.count("**reproduced**") == n_claims and text.count("**contradicted**") == n_claims
  assert "AdaSPEC accepts more than DistillSpec" in text and "61.02" in text
