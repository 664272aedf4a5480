"""The domain-draft study (dsrepro.repro.domain, figures domain / domain_data; arXiv 2503.07807) at the smoke
profile: the data scenarios, equal budgets across arms, black-box arms never read target logits, the figures'
tables, claims and plots."""
import dataclasses

import numpy as np
import pandas as pd
import pytest
from flax import nnx

from dsrepro import tokenizer as tok_lib
from dsrepro.kd import online
from dsrepro.models.transformer import Transformer
from dsrepro.repro import artefacts as ex
from dsrepro.repro import domain, figure
from dsrepro.repro.figures import domain as fig_domain
from dsrepro.repro.figures import domain_data as fig_data
from dsrepro.repro.profiles import get_profile

P = get_profile("smoke")
S = domain.settings(P)
TASK = S.tasks[0]
SPECS = (fig_domain.SPEC, fig_data.SPEC)


class RaisingTarget(Transformer):
  """A domain target whose logits must never be read."""

  def __call__(self, *args, **kwargs):
    raise AssertionError("the target's logits were read")


@pytest.fixture(scope="module")
def root(tmp_path_factory):
  return tmp_path_factory.mktemp("domain-runs")


@pytest.fixture(scope="module")
def built(root, tmp_path_factory):
  """Both figures made at the smoke profile (every arm trained and evaluated once)."""
  out = tmp_path_factory.mktemp("domain-figures")
  return out, {spec.name: figure.make(spec, P, root, out) for spec in SPECS}


def test_settings_and_recipes():
  assert S.sizes[-1] == S.examples and list(S.sizes) == sorted(S.sizes) and len(S.sizes) >= 4
  assert S.gamma == P.mid_gamma and S.response_len >= 1
  labels = [r.label(S) for r in domain.main_recipes(S) + domain.scenario_recipes(S) + domain.scaling_recipes(S)]
  assert "offline white-box" in labels and "online black-box" in labels and "offline white-box, synthetic" in labels
  assert len(set(labels)) == len(set(domain.main_recipes(S) + domain.scenario_recipes(S) + domain.scaling_recipes(S)))
  with pytest.raises(ValueError):
    domain.Recipe("online", "white", "synthetic", S.examples)
  with pytest.raises(ValueError):
    domain.Recipe("offline", "grey")
  assert set(S.tasks) <= set(domain.PROMPTING)


def test_data_scenarios(root):
  seed = S.seeds[0]
  td = ex.task_data(P, TASK, root)
  rows = domain.query_rows(P, TASK, seed, root)
  assert len(rows) == S.examples == len(set(rows.tolist()))
  hist, cur = (domain.dataset(P, TASK, sc, seed, root) for sc in ("historical", "curated"))
  prompts, plen = domain.historical_prompts(P, TASK, seed, root)
  # historical: the task's training prompts (in the seed's order), then the target's response
  np.testing.assert_array_equal(hist.prompt_len_N, plen)
  for i in range(S.examples):
    np.testing.assert_array_equal(hist.tokens_NxW[i, :plen[i]], prompts[i, :plen[i]])
    assert hist.loss_mask_NxW[i, :plen[i]].sum() == 0 and 1 <= hist.loss_mask_NxW[i].sum() <= S.response_len
  # curated: the ground-truth texts of the same examples, no target involved
  np.testing.assert_array_equal(cur.tokens_NxW, td.train["tokens"][rows])
  assert cur.info["examples"] == S.examples and "marker_rate" not in cur.info
  # synthetic: prompts the target wrote after the prefix, cut at (or ended with) the answer marker
  syn = domain.dataset(P, TASK, "synthetic", seed, root)
  rule = domain.PROMPTING[TASK]
  assert 0.0 <= syn.info["marker_rate"] <= 1.0
  for i in range(3):
    text = tok_lib.decode_until_eos(td.tokenizer, syn.tokens_NxW[i, 1:syn.prompt_len_N[i]])
    assert text.endswith(rule.marker.strip()) and (text.startswith(rule.prefix.strip()) or len(text) > 20)
  assert all(d.tokens_NxW.shape == (S.examples, P.pad_len) for d in (hist, cur, syn))
  assert domain.dataset(P, TASK, "historical", seed, root).id == hist.id  # cached
  assert hist.head(4)["tokens"].shape[0] == 4


def test_equal_budgets(built, root):
  """Every compared arm: N examples (queries), U updates of B rows; the scaling runs: the same U at every size."""
  for r in domain.main_recipes(S) + domain.scenario_recipes(S):
    for d in domain.drafts(P, TASK, r, root):
      assert {k: v for k, v in domain.budget(d).items() if k != "tokens_seen"} == dict(
          examples=S.examples, updates=S.updates, batch=S.batch), r
  for r in domain.scaling_recipes(S):
    b = domain.budget(domain.draft(P, TASK, r, S.seeds[0], root))
    assert (b["examples"], b["updates"], b["batch"]) == (r.n, S.updates, S.batch)
  on = domain.draft(P, TASK, domain.Recipe("online", "white", "historical", S.examples), S.seeds[0], root)
  recs = domain.stream(on)
  assert recs[-1].queries == S.examples and len(recs) == -(-S.examples // S.batch)
  assert all(r.drafted > 0 for r in recs)


def test_black_box_arms_never_read_target_logits(root, monkeypatch):
  """With the domain target replaced by one that raises when called (serving excepted: the online arm serves
  through the real target by definition), every black-box arm trains; a white-box arm raises."""
  seed = 77  # a seed no other test trains
  real = domain.domain_target(P, TASK, root)
  for sc in domain.SCENARIOS:
    domain.dataset(P, TASK, sc, seed, root)  # built with the real target
  raising = dataclasses.replace(real, model=RaisingTarget(real.model.cfg, nnx.Rngs(params=0)))
  monkeypatch.setattr(domain, "domain_target", lambda *a, **k: raising)
  serve = online.serve
  monkeypatch.setattr(online, "serve", lambda target, *a, **k: serve(real.model, *a, **k))
  for sc in domain.SCENARIOS:
    domain.draft(P, TASK, domain.Recipe("offline", "black", sc, S.examples), seed, root)
  domain.draft(P, TASK, domain.Recipe("online", "black", "historical", S.examples), seed, root)
  for recipe in (domain.Recipe("offline", "white", "historical", S.examples),
                 domain.Recipe("online", "white", "historical", S.examples)):
    with pytest.raises(AssertionError, match="logits were read"):
      domain.draft(P, TASK, recipe, seed, root)


def test_figures_tables_claims_and_plots(built):
  out, tables = built
  acc = tables["domain"][fig_domain.PANEL]
  assert {domain.GENERIC, fig_domain.OFF_W, fig_domain.OFF_B, fig_domain.ON_W, fig_domain.ON_B} <= set(acc.model)
  assert set(acc.decoding) == {"greedy", "T=1"} and (acc.gamma == S.gamma).all()
  assert {"alpha_lo", "alpha_hi", "tau_lo", "tau_hi", "examples", "updates", "tokens_seen"} <= set(acc.columns)
  trained = acc[acc["mode"] != "none"]
  assert (trained.updates == S.updates).all() and (trained.examples == S.examples).all()
  stream = tables["domain"][fig_domain.STREAM]
  assert set(stream.box) == {"white", "black"} and stream.queries.max() == S.examples
  scale = tables["domain_data"][fig_data.SCALE]
  assert sorted(set(scale.examples)) == list(S.sizes) and (scale.updates == S.updates).all()
  scen = tables["domain_data"][fig_data.SCEN]
  hist = scen[scen.scenario == "historical"]
  np.testing.assert_allclose(hist.fraction_of_historical, 1.0)
  for spec in SPECS:
    st = tables[spec.name][spec.stats_panel]
    assert set(st.claim) == {c.id for c in spec.claims}
    for c in spec.judge(tables[spec.name]):
      assert c.verdict in ("reproduced", "contradicted", "inconclusive") and "[" in c.ours
    for f in [f"{p}.csv" for p in spec.all_panels] + [f"{spec.name}.png", f"{spec.name}.pdf"]:
      assert (out / f).stat().st_size > 0, f
    loaded = figure.load_tables(spec, out)  # the report's path: plots and judges from the CSVs alone
    assert [c.verdict for c in spec.judge(loaded)] == [c.verdict for c in spec.judge(tables[spec.name])]
    kn = spec.key_numbers(loaded)
    assert all(isinstance(k, pd.DataFrame) and not k.empty for k in kn)
  assert "updates of" in fig_domain.SPEC.summary(tables["domain"])


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.name)
def test_plots_without_data(tmp_path, spec):
  """Missing CSVs (None) and empty frames still draw (the report and test_plots call plot on such tables)."""
  for tables in ({p: None for p in spec.all_panels}, {p: pd.DataFrame() for p in spec.panels}):
    paths = figure.draw(spec, tables, tmp_path)
    assert all(p.stat().st_size > 0 for p in paths)
