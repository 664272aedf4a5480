"""Tests of distillation: data sources, mixtures, the KD/AdaSPEC losses in training, resume, reuse, alignment eval.

Compilation dominates on CPU, so the runs share shapes and one TrainConfig (TC): every row is 16 tokens wide (data
width 16 = longest prompt 6 + NEW 10), and train_loop / make_kd_loss then reuse one compiled step per loss.
"""
import dataclasses
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from dsrepro.sd import decode

from dsrepro.kd import batches as kd_data
from dsrepro.kd import distill as D
from dsrepro.kd import recipes as R

from dsrepro import runs
from dsrepro.models.transformer import ModelConfig, make_model
from dsrepro.tokenizer import decode_until_eos
from dsrepro.train import TrainConfig, sft_batch_fn

V, PAD, BOS, EOS = 40, 0, 1, 2
L, NEW, B = 16, 10, 8                   # data width, generated tokens per row, batch rows
CFG = ModelConfig(vocab_size=V, d_model=32, n_layers=1, n_heads=2, d_ff=64, max_len=32)
TC = TrainConfig(steps=20, batch_size=B, learning_rate=0.1, schedule="constant", ckpt_every=8, log_every=1,
                 eval_every=10)


def make_data(n=16, seed=0):
  """[bos] + prompt (2..5 tokens) + target (3..7 tokens) + [eos], right-padded to L; mask on target + eos."""
  rng = np.random.default_rng(seed)
  tokens, mask = np.full((n, L), PAD, np.int32), np.zeros((n, L), np.float32)
  plen = np.zeros(n, np.int32)
  for i in range(n):
    p, t = rng.integers(2, 6), rng.integers(3, 8)
    row = [BOS] + list(rng.integers(3, V, p)) + list(rng.integers(3, V, t)) + [EOS]
    tokens[i, :len(row)] = row
    mask[i, p + 1:len(row)] = 1.0
    plen[i] = p + 1
  assert plen.max() + NEW == L
  return {"tokens": tokens, "loss_mask": mask, "prompt_len": plen}


def sharp_teacher(seed=1, scale=10.0):
  """A random model with a scaled-up (tied) embedding: peaked next-token distributions, far from a fresh student."""
  m = make_model(CFG, seed)
  m.embed.embedding[...] = m.embed.embedding[...] * scale
  return m


def leaves(model):
  return [np.asarray(x) for x in jax.tree.leaves(nnx.state(model, nnx.Param))]


def same(a, b):
  return all(np.array_equal(x, y) for x, y in zip(leaves(a), leaves(b)))


def records(run_dir):
  return [json.loads(line) for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]


def kd_of(name, **kw):
  return dataclasses.replace(R.ALGORITHMS[name], max_new_tokens=NEW, **kw)


def batch_fn_for(kd, data, teacher, width=L):
  dc = decode.DecodeConfig(max_new_tokens=kd.max_new_tokens, temperature=kd.temperature, eos_id=EOS, pad_id=PAD)
  return kd_data.kd_batch_fn(data, kd.sources, kd.mix, B, 0, width=width, prompt_width=int(data["prompt_len"].max()),
                             decode_cfg=dc, teacher=teacher)


def check_generated_rows(tokens, mask, data_rows, data):
  """Prompt copied; mask exactly on a contiguous generated span ending at the first eos (or the length budget)."""
  n_eos = 0
  for row, m, i in zip(tokens, mask, data_rows):
    p = int(data["prompt_len"][i])
    np.testing.assert_array_equal(row[:p], data["tokens"][i, :p])
    span = np.flatnonzero(m)
    assert len(span) >= 1 and span[0] == p and np.array_equal(span, np.arange(p, p + len(span)))
    gen = row[p:p + len(span)]
    assert not np.any(gen[:-1] == EOS)  # (a random model may sample pad or bos: those are just tokens)
    assert gen[-1] == EOS or len(span) == NEW
    n_eos += gen[-1] == EOS
    assert np.all(row[p + len(span):] == PAD)
  return n_eos


def test_kd_config_validation_algorithms_and_row_split():
  assert {k: (c.divergence, c.data) for k, c in R.ALGORITHMS.items()} == {
      "supervised_kd": ("fkl", "ground_truth"), "seqkd": ("fkl", "teacher"), "imitkd": ("fkl", "ground_truth+student"),
      "f_distill": ("tvd", "teacher+student"), "gkd": ("fkl", "student")}
  assert R.grid_config("teacher+student", "jsd", max_new_tokens=7) == R.KDConfig("jsd", data="teacher+student",
                                                                                  max_new_tokens=7)
  for kw, bad in [({"divergence": "kl"}, "kl"), ({"data": "teacher+ground_truth"}, "teacher\\+ground_truth"),
                  ({"mix": 1.5}, "1.5"), ({"beta": -0.1}, "-0.1"), ({"temperature": 0.0}, "0.0"),
                  ({"max_new_tokens": 0}, "0"), ({"adaspec_k": 0.0}, "0.0"), ({"adaspec_k": 1.2}, "1.2"),
                  ({"adaspec_k": 0.4, "divergence": "tvd"}, "tvd")]:
    with pytest.raises(ValueError, match=bad):
      R.KDConfig(**kw)
  with pytest.raises(ValueError, match="ground_truth\\+student"):
    R.grid_config("ground_truth+student", "fkl")
  assert kd_data.split_rows(8, ("teacher", "student"), 0.25) == (("teacher", 0, 6), ("student", 6, 8))
  assert kd_data.split_rows(5, ("ground_truth", "student"), 0.5) == (("ground_truth", 0, 3), ("student", 3, 5))
  assert kd_data.split_rows(4, ("ground_truth", "student"), 1.0) == (("student", 0, 4),)
  assert kd_data.split_rows(4, ("student",), 0.9) == (("student", 0, 4),)
  # The loss ignores the data fields: recipes that differ only in data share one loss function (one compile).
  assert D.make_kd_loss(R.ALGORITHMS["gkd"]) is D.make_kd_loss(kd_of("supervised_kd", mix=0.3))
  assert D.make_kd_loss(R.ALGORITHMS["gkd"]) is not D.make_kd_loss(R.ALGORITHMS["f_distill"])


def test_data_sources_rows_masks_and_on_policy():
  data, teacher, student = make_data(), make_model(CFG, 1), make_model(CFG, 2)
  key = jax.random.key(3)
  sft = sft_batch_fn({k: data[k] for k in ("tokens", "loss_mask")}, B, seed=0)
  gt_wide = kd_data.kd_batch_fn(data, ("ground_truth",), 0.5, B, 0, width=20, prompt_width=6, decode_cfg=None)
  gen_fns = {name: batch_fn_for(kd_of(name), data, teacher) for name in ("seqkd", "gkd")}
  n_eos, traces = 0, None
  for step in (0, 1, 2):  # 24 rows > 16 examples: crosses an epoch
    rows = kd_data.epoch_indices(16, B, 0)(step)
    gt, ref = gt_wide(step, student, key), sft(step, None, None)
    assert gt["tokens"].shape == (B, 20) and gt["tokens"].dtype == np.int32 and gt["loss_mask"].dtype == np.float32
    np.testing.assert_array_equal(gt["tokens"][:, :L], ref["tokens"])
    np.testing.assert_array_equal(gt["loss_mask"][:, :L], ref["loss_mask"])
    assert np.all(gt["tokens"][:, L:] == PAD) and np.all(gt["loss_mask"][:, L:] == 0)
    for fn in gen_fns.values():
      b = fn(step, student, jax.random.fold_in(key, step))
      assert b["tokens"].shape == (B, L) and b["loss_mask"].shape == (B, L)
      n_eos += check_generated_rows(b["tokens"], b["loss_mask"], rows, data)
    if step == 0:
      traces = decode.TRACE_COUNT["generate"]
  assert decode.TRACE_COUNT["generate"] == traces  # later steps reuse the compiled sampler
  assert 1 <= n_eos < 3 * 2 * B  # some rows stopped at eos (mask includes it), others ran to the budget
  # Same key: teacher rows ignore the student; student rows are the current student's, so they change with it.
  fn_t, fn_s, other = gen_fns["seqkd"], gen_fns["gkd"], make_model(CFG, 5)
  np.testing.assert_array_equal(fn_t(0, student, key)["tokens"], fn_t(0, other, key)["tokens"])
  np.testing.assert_array_equal(fn_s(0, student, key)["tokens"], fn_s(0, student, key)["tokens"])
  assert not np.array_equal(fn_s(0, student, key)["tokens"], fn_s(0, other, key)["tokens"])
  assert not np.array_equal(fn_s(0, student, key)["tokens"], fn_s(0, student, jax.random.key(4))["tokens"])
  # Mixtures: the first round(B (1 - mix)) rows from the first source, in the same dataset order.
  rows = kd_data.epoch_indices(16, B, 0)(1)
  gt = batch_fn_for(kd_of("supervised_kd"), data, teacher)(1, student, key)
  for name in ("imitkd", "f_distill"):
    b = batch_fn_for(kd_of(name), data, teacher)(1, student, key)
    cut = B // 2
    if name == "imitkd":
      np.testing.assert_array_equal(b["tokens"][:cut], gt["tokens"][:cut])
      np.testing.assert_array_equal(b["loss_mask"][:cut], gt["loss_mask"][:cut])
      assert not np.array_equal(b["tokens"][cut:], gt["tokens"][cut:])
    else:
      check_generated_rows(b["tokens"][:cut], b["loss_mask"][:cut], rows[:cut], data)
    check_generated_rows(b["tokens"][cut:], b["loss_mask"][cut:], rows[cut:], data)


def test_algorithms_reduce_kd_loss_and_leave_student_untouched(tmp_path):
  data, teacher, student = make_data(), sharp_teacher(), make_model(CFG, 2)
  before = leaves(student)
  eval_fn = D.alignment_eval_fn(teacher, data["tokens"][:4, :6], data["prompt_len"][:4], gammas=(2,),
                                temperatures=(1.0,), max_new_tokens=6, eos_id=EOS, pad_id=PAD)
  for name in R.ALGORITHMS:
    out = D.distill(student, teacher, kd_of(name), TC, data, tmp_path / name, pad_id=PAD, eos_id=EOS,
                    eval_fn=eval_fn if name == "gkd" else None)
    recs = records(tmp_path / name)
    loss = np.array([r["kd_loss"] for r in recs])
    assert len(loss) == TC.steps and np.allclose(loss, [r["loss"] for r in recs])
    assert loss[-4:].mean() < 0.5 * loss[:4].mean(), (name, loss)
    assert not same(out, student) and runs.is_done(tmp_path / name)
  assert all(np.array_equal(a, b) for a, b in zip(before, leaves(student)))  # the initialisation is never modified
  evals = [r for r in recs if "alpha/g2/T1" in r]
  assert [r["step"] for r in evals] == [10, 20]
  assert set(evals[-1]) >= {"alpha/g2/T1", "tau/g2/T1"} and "alpha/g2/T0" not in evals[-1]
  for r in evals:
    assert 0 <= r["alpha/g2/T1"] <= 1 and 1 <= r["tau/g2/T1"] <= 3


def test_adaspec_selects_k_and_builds_reference(tmp_path):
  data, teacher, student = make_data(), sharp_teacher(), make_model(CFG, 2)
  draft, ref = D.adaspec(student, teacher, TC, data, tmp_path, k=0.4, pad_id=PAD, eos_id=EOS)
  assert runs.is_done(tmp_path / "ref") and runs.is_done(tmp_path / "draft")
  recs = records(tmp_path / "draft")
  assert len(recs) == TC.steps
  for r in recs:
    assert abs(r["selected_frac"] - 0.4) < 0.05, r
    assert 0.2 * r["kd_loss"] < r["loss"] <= r["kd_loss"] + 1e-6
  ref_recs = records(tmp_path / "ref")
  assert "selected_frac" not in ref_recs[0] and ref_recs[-1]["kd_loss"] < 0.7 * ref_recs[0]["kd_loss"]
  # Stage 2's frozen reference is stage 1's final model.
  batch = kd_data.kd_batch_fn(data, ("ground_truth",), 0.5, B, 0, width=L, prompt_width=6, decode_cfg=None)(0, 0, 0)
  ref_loss = D.kd_loss(ref, {k: jnp.asarray(v) for k, v in batch.items()}, teacher)[0]
  assert abs(recs[0]["ref_kd_loss"] - float(ref_loss)) < 1e-4
  assert not same(draft, ref) and not same(draft, student) and not same(ref, student)
  with pytest.raises(ValueError, match="reference"):
    D.distill(student, teacher, R.KDConfig(adaspec_k=0.4), TC, data, tmp_path / "noref")


def test_bad_inputs_raise(tmp_path):
  data, teacher, student = make_data(), make_model(CFG, 1), make_model(CFG, 2)
  small = make_model(dataclasses.replace(CFG, vocab_size=33), 0)
  with pytest.raises(ValueError, match="student vocab_size=33, teacher vocab_size=40"):
    D.distill(small, teacher, R.KDConfig(), TC, data, tmp_path / "x")
  with pytest.raises(ValueError, match="pad_id and eos_id"):
    D.distill(student, teacher, R.ALGORITHMS["gkd"], TC, data, tmp_path / "x")
  with pytest.raises(ValueError, match="max_len=32"):
    D.distill(student, teacher, R.KDConfig(data="student", max_new_tokens=30), TC, data, tmp_path / "x", pad_id=PAD,
              eos_id=EOS)
  with pytest.raises(ValueError, match="prompt_len"):
    D.distill(student, teacher, R.KDConfig(), TC, {k: data[k] for k in ("tokens", "loss_mask")}, tmp_path / "x")
  with pytest.raises(ValueError, match="range \\[1, 40\\] outside vocab_size=40"):
    D.distill(student, teacher, R.KDConfig(), TC, {**data, "tokens": data["tokens"] + 1}, tmp_path / "x")
  with pytest.raises(ValueError, match="eos_id=3"):
    D.distill(student, teacher, R.ALGORITHMS["gkd"], TC, {**data, "eos_id": 2}, tmp_path / "x", eos_id=3)
  with pytest.raises(ValueError, match="only used by AdaSPEC"):
    D.distill(student, teacher, R.KDConfig(), TC, data, tmp_path / "x", ref=student)
  assert not (tmp_path / "x").exists()


def test_resume_after_kill_is_exact_and_finished_run_is_reused(tmp_path, monkeypatch):
  data, teacher, student = make_data(), sharp_teacher(), make_model(CFG, 2)
  kd, kw = kd_of("f_distill"), dict(pad_id=PAD, eos_id=EOS)
  full = D.distill(student, teacher, kd, TC, data, tmp_path / "full", **kw)
  part = D.distill(student, teacher, kd, TC, data, tmp_path / "part", stop_after=11, **kw)  # last checkpoint: 8
  assert not runs.is_done(tmp_path / "part") and not same(part, full)
  real, seen = kd_data.kd_batch_fn, []

  def crashing(*a, **k):
    fn = real(*a, **k)

    def batch_fn(step, model, key):
      if step == 17:
        raise KeyboardInterrupt("simulated crash")
      seen.append(step)
      return fn(step, model, key)

    return batch_fn

  monkeypatch.setattr(kd_data, "kd_batch_fn", crashing)
  with pytest.raises(KeyboardInterrupt):  # resumes at 8, checkpoints 16, dies fetching batch 17
    D.distill(student, teacher, kd, TC, data, tmp_path / "part", **kw)
  monkeypatch.setattr(kd_data, "kd_batch_fn", real)
  resumed = D.distill(student, teacher, kd, TC, data, tmp_path / "part", **kw)
  assert seen == list(range(8, 17)) and runs.is_done(tmp_path / "part") and same(resumed, full)
  strip = lambda rs: [{k: v for k, v in r.items() if k != "elapsed"} for r in rs]
  assert strip(records(tmp_path / "full")) == strip(records(tmp_path / "part"))
  # A finished run is loaded, never retrained: no batch is built, metrics untouched.
  metrics = (tmp_path / "full" / "metrics.jsonl").read_bytes()
  monkeypatch.setattr(kd_data, "kd_batch_fn",
                      lambda *a, **k: lambda *b: pytest.fail("retrained a finished run"))
  again = D.distill(student, teacher, kd, TC, data, tmp_path / "full", **kw)
  assert same(again, full) and (tmp_path / "full" / "metrics.jsonl").read_bytes() == metrics


class FakeTokenizer:
  eos_token_id, pad_token_id = EOS, PAD

  def decode(self, ids, skip_special_tokens=True, clean_up_tokenization_spaces=False):
    return " ".join(str(i) for i in ids)


def test_alignment_eval_fn_values():
  data, teacher, student = make_data(), sharp_teacher(), make_model(CFG, 2)
  prompts, plen = data["tokens"][:4, :6], data["prompt_len"][:4]
  greedy = decode.generate(student, prompts, plen, decode.DecodeConfig(6, eos_id=EOS, pad_id=PAD))
  refs = [decode_until_eos(FakeTokenizer(), r) for r in np.asarray(greedy.tokens_BxN)]
  assert all(refs)
  ev = D.alignment_eval_fn(teacher, prompts, plen, gammas=(2,), max_new_tokens=6, eos_id=EOS, pad_id=PAD,
                           task_metric="accuracy", tokenizer=FakeTokenizer(), refs=refs)
  own = ev(teacher)   # a draft equal to the target accepts everything, greedy and sampled
  assert set(own) == {"alpha/g2/T0", "alpha/g2/T1", "tau/g2/T0", "tau/g2/T1", "task_score"}
  assert own["alpha/g2/T0"] == 1.0 and own["alpha/g2/T1"] == 1.0 and own["tau/g2/T1"] > 2.0
  res = ev(student)
  assert res["alpha/g2/T1"] < 0.9 and res["tau/g2/T1"] < own["tau/g2/T1"]
  assert res["task_score"] == 100.0 and ev(student) == res  # fixed keys: same draft, same numbers
  with pytest.raises(ValueError, match="task_metric, tokenizer and refs"):
    D.alignment_eval_fn(teacher, prompts, plen, task_metric="accuracy")
