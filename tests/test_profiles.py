"""profiles: every profile is runnable as written, checked on CPU without training (so that a `full` run on an
accelerator does not fail an hour in on a config mistake): tasks load, model sizes exist and are ordered,
and the settings the figures rely on are present."""
import dataclasses

import pytest

from dsrepro import data
from dsrepro.models.transformer import GARDEN, count_params
from dsrepro.repro import plan
from dsrepro.repro.profiles import PROFILES, get_profile


@pytest.mark.parametrize("name", list(PROFILES))
def test_profile_tasks_load(name):
  p = PROFILES[name]
  for task in dict.fromkeys(p.tasks + p.fig4_tasks + p.adaspec_tasks):
    train = data.load_task(task, "train", limit=p.n_train or None)
    val = data.load_task(task, "validation")
    assert len(train) >= min(p.n_train or 100, 100), (name, task, len(train))
    assert len(val) >= min(p.n_eval, 64), (name, task, len(val))  # eval uses up to n_eval of them
  assert set(p.fig4_tasks) <= set(p.tasks) | set(PROFILES["full"].tasks)
  assert p.hf_models or (p.pretrain_corpus and set(p.pretrain_corpus) <= set(data.TASKS))
  for task in p.domain_tasks:  # the domain study draws its N examples from the training split
    assert len(data.load_task(task, "train")) >= p.domain_examples, (name, task)


@pytest.mark.parametrize("name", list(PROFILES))
def test_profile_models_and_lengths(name):
  p = PROFILES[name]
  sizes = {*GARDEN, *dict(p.hf_models)}
  assert p.draft_size in sizes and p.target_size in sizes and set(p.garden) <= sizes
  params = {s: count_params(plan.model_config(p, s)) for s in {*p.garden, p.target_size, p.draft_size}}
  assert params[p.draft_size] < params[p.target_size]
  if name in ("cpu", "full", "pythia"):  # the paper's pairs are 7x-40x apart
    assert params[p.target_size] >= 8 * params[p.draft_size], params
  assert [params[s] for s in p.garden] == sorted(params[s] for s in p.garden), "garden must go smallest first"
  assert len(p.garden) >= 3 and p.draft_size in p.garden  # (context_len itself: tests/test_experiments.py)


@pytest.mark.parametrize("name", list(PROFILES))
def test_profile_settings_the_figures_need(name):
  p = PROFILES[name]
  assert {0.0, 1.0} <= set(p.temperatures)  # greedy and T = 1 panels
  assert all(g >= 1 for g in p.gammas) and all(0 < e <= 1 for e in p.lenience_eps) and 1.0 in p.lenience_eps
  kd_steps = p.task_train(p.kd, 374).steps  # epochs (pythia): the smallest training set we have, MBPP's
  assert 1 <= p.track_points <= kd_steps and p.kd_grid_steps >= 1 and 0 < p.adaspec_k <= 1
  assert p.eval_batch >= 1 and p.n_eval >= 1 and p.n_latency_prompts >= 1
  assert p.kd_seeds >= 1 and p.latency_reps >= 1
  for tc in (p.sft_target, p.sft_draft, p.sft_garden, p.kd) + ((p.pretrain,) if p.pretrain else ()):
    assert tc.steps >= 1 and tc.learning_rate > 0 and tc.warmup_steps <= tc.steps


def test_full_profile_covers_the_paper():
  p = PROFILES["full"]
  assert set(p.tasks) == {"gsm8k", "xsum", "cnn_dailymail", "wmt14_en_de", "lm1b"}
  assert set(p.fig4_tasks) == {"gsm8k", "xsum"} and {"alpaca", "mbpp"} <= set(p.adaspec_tasks)
  assert len(p.garden) >= 4


def test_get_profile():
  q = get_profile("quick", tasks=["gsm8k", "xsum"], n_eval=7)
  assert q.tasks == ("gsm8k", "xsum") and q.n_eval == 7 and PROFILES["quick"].n_eval != 7
  with pytest.raises(ValueError, match="'nope'.*smoke"):
    get_profile("nope")
  with pytest.raises(TypeError):
    get_profile("quick", not_a_field=1)
  with pytest.raises(dataclasses.FrozenInstanceError):
    q.n_eval = 3
