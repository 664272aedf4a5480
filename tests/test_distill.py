"""Tests of distillation: data sources, mixtures, the KD/AdaSPEC losses in training, resume, reuse, alignment eval."""
import dataclasses
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from dsrepro import decode, distill as D, kd_data, runs
from dsrepro.models import ModelConfig, make_model
from dsrepro.tokenizer import decode_until_eos
from dsrepro.train import TrainConfig, sft_batch_fn

V, PAD, BOS, EOS = 40, 0, 1, 2
NEW = 12                                # generated tokens per row
CFG = ModelConfig(vocab_size=V, d_model=32, n_layers=1, n_heads=2, d_ff=64, max_len=32)
B = 8


def make_data(n=16, seed=0):
  """[bos] + prompt (2..5 tokens) + target (3..7 tokens) + [eos], right-padded to 16; mask on target + eos."""
  rng = np.random.default_rng(seed)
  tokens, mask = np.full((n, 16), PAD, np.int32), np.zeros((n, 16), np.float32)
  plen = np.zeros(n, np.int32)
  for i in range(n):
    p, t = rng.integers(2, 6), rng.integers(3, 8)
    row = [BOS] + list(rng.integers(3, V, p)) + list(rng.integers(3, V, t)) + [EOS]
    tokens[i, :len(row)] = row
    mask[i, p + 1:len(row)] = 1.0
    plen[i] = p + 1
  return {"tokens": tokens, "loss_mask": mask, "prompt_len": plen}


def sharp_teacher(seed=1, scale=10.0):
  """A random model with a scaled-up (tied) embedding: peaked next-token distributions, far from a fresh student."""
  m = make_model(CFG, seed)
  m.embed.embedding.value = m.embed.embedding.value * scale
  return m


def leaves(model):
  return [np.asarray(x) for x in jax.tree.leaves(nnx.state(model, nnx.Param))]


def same(a, b):
  return all(np.array_equal(x, y) for x, y in zip(leaves(a), leaves(b)))


def records(run_dir):
  return [json.loads(line) for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]


def batch_fn_for(kd, data, teacher, seed=0):
  width = max(data["tokens"].shape[1], int(data["prompt_len"].max()) + kd.max_new_tokens)
  dc = decode.DecodeConfig(max_new_tokens=kd.max_new_tokens, temperature=kd.temperature, eos_id=EOS, pad_id=PAD)
  return kd_data.kd_batch_fn(data, kd.sources, kd.mix, B, seed, width=width, prompt_width=int(data["prompt_len"].max()),
                             decode_cfg=dc, teacher=teacher), width


def check_generated_rows(tokens, mask, data_rows, data):
  """Prompt copied; mask exactly on a contiguous generated span ending at the first eos (or the length budget)."""
  n_eos = 0
  for row, m, i in zip(tokens, mask, data_rows):
    p = int(data["prompt_len"][i])
    np.testing.assert_array_equal(row[:p], data["tokens"][i, :p])
    span = np.flatnonzero(m)
    assert len(span) >= 1 and span[0] == p and np.array_equal(span, np.arange(p, p + len(span)))
    gen = row[p:p + len(span)]
    assert not np.any(gen[:-1] == EOS) and np.all(gen != PAD)
    assert gen[-1] == EOS or len(span) == NEW
    n_eos += gen[-1] == EOS
    assert np.all(row[p + len(span):] == PAD)
  return n_eos


def test_kd_config_validation_and_algorithms():
  assert {k: (c.divergence, c.data) for k, c in D.ALGORITHMS.items()} == {
      "supervised_kd": ("fkl", "ground_truth"), "seqkd": ("fkl", "teacher"), "imitkd": ("fkl", "ground_truth+student"),
      "f_distill": ("tvd", "teacher+student"), "gkd": ("fkl", "student")}
  assert D.grid_config("teacher+student", "jsd", max_new_tokens=7) == D.KDConfig("jsd", data="teacher+student",
                                                                                  max_new_tokens=7)
  for kw, bad in [({"divergence": "kl"}, "kl"), ({"data": "teacher+ground_truth"}, "teacher\\+ground_truth"),
                  ({"mix": 1.5}, "1.5"), ({"beta": -0.1}, "-0.1"), ({"temperature": 0.0}, "0.0"),
                  ({"max_new_tokens": 0}, "0"), ({"adaspec_k": 0.0}, "0.0"), ({"adaspec_k": 1.2}, "1.2"),
                  ({"adaspec_k": 0.4, "divergence": "tvd"}, "tvd")]:
    with pytest.raises(ValueError, match=bad):
      D.KDConfig(**kw)
  with pytest.raises(ValueError, match="ground_truth\\+student"):
    D.grid_config("ground_truth+student", "fkl")
  assert kd_data.split_rows(8, ("teacher", "student"), 0.25) == (("teacher", 0, 6), ("student", 6, 8))
  assert kd_data.split_rows(5, ("ground_truth", "student"), 0.5) == (("ground_truth", 0, 3), ("student", 3, 5))
  assert kd_data.split_rows(4, ("ground_truth", "student"), 1.0) == (("student", 0, 4),)


def test_data_sources_rows_masks_and_on_policy():
  data, teacher, student = make_data(), make_model(CFG, 1), make_model(CFG, 2)
  key = jax.random.key(3)
  gt_fn, width = batch_fn_for(D.ALGORITHMS["supervised_kd"], data, teacher)
  assert width == int(data["prompt_len"].max()) + NEW > data["tokens"].shape[1]
  sft = sft_batch_fn({k: data[k] for k in ("tokens", "loss_mask")}, B, seed=0)
  n_eos = 0
  for step in (0, 1, 2):  # 24 rows > 16 examples: crosses an epoch
    rows = kd_data.epoch_indices(16, B, 0)(step)
    gt, ref = gt_fn(step, student, key), sft(step, None, None)
    assert gt["tokens"].shape == (B, width) and gt["tokens"].dtype == np.int32
    np.testing.assert_array_equal(gt["tokens"][:, :16], ref["tokens"])
    np.testing.assert_array_equal(gt["loss_mask"][:, :16], ref["loss_mask"])
    assert np.all(gt["tokens"][:, 16:] == PAD) and np.all(gt["loss_mask"][:, 16:] == 0)
    for name in ("seqkd", "gkd"):
      kd = dataclasses.replace(D.ALGORITHMS[name], max_new_tokens=NEW)
      b = batch_fn_for(kd, data, teacher)[0](step, student, key)
      assert b["tokens"].shape == (B, width)
      n_eos += check_generated_rows(b["tokens"], b["loss_mask"], rows, data)
  assert n_eos >= 1  # some rows stopped at eos (mask includes it), others ran to the budget
  # Same key: the teacher rows ignore the student; student rows are the student's and change when it changes.
  kd_t = dataclasses.replace(D.ALGORITHMS["seqkd"], max_new_tokens=NEW)
  kd_s = dataclasses.replace(D.ALGORITHMS["gkd"], max_new_tokens=NEW)
  fn_t, fn_s = batch_fn_for(kd_t, data, teacher)[0], batch_fn_for(kd_s, data, teacher)[0]
  other = make_model(CFG, 5)
  np.testing.assert_array_equal(fn_t(0, student, key)["tokens"], fn_t(0, other, key)["tokens"])
  np.testing.assert_array_equal(fn_s(0, student, key)["tokens"], fn_s(0, student, key)["tokens"])
  assert not np.array_equal(fn_s(0, student, key)["tokens"], fn_s(0, other, key)["tokens"])
  assert not np.array_equal(fn_s(0, student, key)["tokens"], fn_s(0, student, jax.random.key(4))["tokens"])
  # Mixtures: first round(B (1 - mix)) rows from the first source, in the same dataset order.
  for name, mix in (("imitkd", 0.5), ("f_distill", 0.25)):
    kd = dataclasses.replace(D.ALGORITHMS[name], max_new_tokens=NEW, mix=mix)
    b = batch_fn_for(kd, data, teacher)[0](1, student, key)
    cut = round(B * (1 - mix))
    rows = kd_data.epoch_indices(16, B, 0)(1)
    if name == "imitkd":
      ref = gt_fn(1, student, key)
      np.testing.assert_array_equal(b["tokens"][:cut], ref["tokens"][:cut])
      np.testing.assert_array_equal(b["loss_mask"][:cut], ref["loss_mask"][:cut])
      assert not np.array_equal(b["tokens"][cut:], ref["tokens"][cut:])
    else:
      check_generated_rows(b["tokens"][:cut], b["loss_mask"][:cut], rows[:cut], data)
    check_generated_rows(b["tokens"][cut:], b["loss_mask"][cut:], rows[cut:], data)
  assert decode.TRACE_COUNT["generate"] <= 8  # per (model, rows): no per-step recompiles


def test_algorithms_reduce_kd_loss_and_leave_student_untouched(tmp_path):
  data, teacher = make_data(), sharp_teacher()
  student = make_model(CFG, 2)
  before = leaves(student)
  tc = TrainConfig(steps=24, batch_size=B, learning_rate=0.1, ckpt_every=0, log_every=1, schedule="constant")
  prompts = data["tokens"][:4, :6]
  eval_fn = D.alignment_eval_fn(teacher, prompts, data["prompt_len"][:4], gammas=(2,), max_new_tokens=6, eos_id=EOS,
                                pad_id=PAD)
  for name, kd in D.ALGORITHMS.items():
    kd = dataclasses.replace(kd, max_new_tokens=NEW)
    out = D.distill(student, teacher, kd, tc, data, tmp_path / name, pad_id=PAD, eos_id=EOS,
                    eval_fn=eval_fn if name == "gkd" else None)
    recs = records(tmp_path / name)
    loss = np.array([r["kd_loss"] for r in recs])
    assert len(loss) == 24 and np.allclose(loss, [r["loss"] for r in recs])
    assert loss[-4:].mean() < 0.7 * loss[:4].mean(), (name, loss)
    assert not same(out, student) and runs.is_done(tmp_path / name)
  assert all(np.array_equal(a, b) for a, b in zip(before, leaves(student)))
  last = recs[-1]
  for k in ("alpha/g2/T0", "alpha/g2/T1", "tau/g2/T0", "tau/g2/T1"):
    assert k in last and np.isfinite(last[k])
  assert 0 <= last["alpha/g2/T1"] <= 1 and 1 <= last["tau/g2/T1"] <= 3


def test_tvd_and_jsd_grid_cells_train():
  data, teacher, student = make_data(), sharp_teacher(), make_model(CFG, 2)
  import tempfile
  with tempfile.TemporaryDirectory() as d:
    tc = TrainConfig(steps=16, batch_size=B, learning_rate=0.1, ckpt_every=0, log_every=1, schedule="constant")
    for div in ("tvd", "rkl"):
      D.distill(student, teacher, D.grid_config("ground_truth", div), tc, data, f"{d}/{div}")
      loss = np.array([r["kd_loss"] for r in records(f"{d}/{div}")])
      assert loss[-3:].mean() < 0.8 * loss[:3].mean(), (div, loss)


def test_adaspec_selects_k_and_builds_reference(tmp_path):
  data, teacher, student = make_data(), sharp_teacher(), make_model(CFG, 2)
  tc = TrainConfig(steps=6, batch_size=B, learning_rate=0.1, ckpt_every=0, log_every=1)
  draft, ref = D.adaspec(student, teacher, tc, data, tmp_path, k=0.4)
  assert runs.is_done(tmp_path / "ref") and runs.is_done(tmp_path / "draft")
  recs = records(tmp_path / "draft")
  assert len(recs) == 6
  for r in recs:
    assert abs(r["selected_frac"] - 0.4) < 0.05, r
    assert r["loss"] <= r["kd_loss"] + 1e-6 and r["loss"] > 0.2 * r["kd_loss"]
  ref_recs = records(tmp_path / "ref")
  assert "selected_frac" not in ref_recs[0] and ref_recs[-1]["kd_loss"] < ref_recs[0]["kd_loss"]
  # The reference at the end of stage 1 is the frozen model of stage 2.
  assert abs(recs[0]["ref_kd_loss"] - D.kd_loss(ref, {k: jnp.asarray(v) for k, v in
                                                       kd_data.kd_batch_fn(data, ("ground_truth",), 0.5, B, 0,
                                                                           width=16, prompt_width=6,
                                                                           decode_cfg=None)(0, None, None).items()},
                                                teacher)[0]) < 1e-4
  assert not same(draft, ref) and not same(draft, student) and not same(ref, student)
  with pytest.raises(ValueError, match="reference"):
    D.distill(student, teacher, D.KDConfig(adaspec_k=0.4), tc, data, tmp_path / "noref")


def test_bad_inputs_raise(tmp_path):
  data, teacher, student = make_data(), make_model(CFG, 1), make_model(CFG, 2)
  tc = TrainConfig(steps=1, batch_size=B)
  small = make_model(dataclasses.replace(CFG, vocab_size=33), 0)
  with pytest.raises(ValueError, match="student vocab_size=33, teacher vocab_size=40"):
    D.distill(small, teacher, D.KDConfig(), tc, data, tmp_path / "x")
  with pytest.raises(ValueError, match="pad_id and eos_id"):
    D.distill(student, teacher, D.ALGORITHMS["gkd"], tc, data, tmp_path / "x")
  with pytest.raises(ValueError, match="max_len=32"):
    D.distill(student, teacher, D.KDConfig(data="student", max_new_tokens=30), tc, data, tmp_path / "x", pad_id=PAD,
              eos_id=EOS)
  with pytest.raises(ValueError, match="prompt_len"):
    D.distill(student, teacher, D.KDConfig(), tc, {k: data[k] for k in ("tokens", "loss_mask")}, tmp_path / "x")
  with pytest.raises(ValueError, match="eos_id=3"):
    D.distill(student, teacher, D.ALGORITHMS["gkd"], tc, {**data, "eos_id": 2}, tmp_path / "x", eos_id=3)
  with pytest.raises(ValueError, match="only used by AdaSPEC"):
    D.distill(student, teacher, D.KDConfig(), tc, data, tmp_path / "x", ref=student)
  assert not (tmp_path / "x").exists()


def test_resume_after_kill_is_exact_and_finished_run_is_reused(tmp_path, monkeypatch):
  data, teacher, student = make_data(), sharp_teacher(), make_model(CFG, 2)
  kd = dataclasses.replace(D.ALGORITHMS["f_distill"], max_new_tokens=NEW)
  tc = TrainConfig(steps=7, batch_size=B, learning_rate=0.1, ckpt_every=2, log_every=1)
  kw = dict(pad_id=PAD, eos_id=EOS)
  full = D.distill(student, teacher, kd, tc, data, tmp_path / "full", **kw)
  part = D.distill(student, teacher, kd, tc, data, tmp_path / "part", stop_after=3, **kw)
  assert not runs.is_done(tmp_path / "part") and not same(part, full)
  real = kd_data.kd_batch_fn
  seen = []

  def crashing(*a, **k):
    fn = real(*a, **k)

    def batch_fn(step, model, key):
      if step == 5:
        raise KeyboardInterrupt("simulated crash")
      seen.append(step)
      return fn(step, model, key)

    return batch_fn

  monkeypatch.setattr(kd_data, "kd_batch_fn", crashing)
  with pytest.raises(KeyboardInterrupt):  # resumes at 2, checkpoints 4, dies fetching batch 5
    D.distill(student, teacher, kd, tc, data, tmp_path / "part", **kw)
  monkeypatch.setattr(kd_data, "kd_batch_fn", real)
  resumed = D.distill(student, teacher, kd, tc, data, tmp_path / "part", **kw)
  assert seen == [2, 3, 4] and runs.is_done(tmp_path / "part") and same(resumed, full)
  strip = lambda rs: [{k: v for k, v in r.items() if k != "elapsed"} for r in rs]
  assert strip(records(tmp_path / "full")) == strip(records(tmp_path / "part"))
  # A finished run is loaded, never retrained: no batch is built, metrics untouched.
  metrics = (tmp_path / "full" / "metrics.jsonl").read_bytes()
  monkeypatch.setattr(kd_data, "kd_batch_fn", lambda *a, **k: pytest.fail("retrained a finished run"))
  again = D.distill(student, teacher, kd, tc, data, tmp_path / "full", **kw)
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
  self_ = ev(teacher)   # a draft equal to the target accepts everything, greedy and sampled
  assert set(self_) == {"alpha/g2/T0", "alpha/g2/T1", "tau/g2/T0", "tau/g2/T1", "task_score"}
  assert self_["alpha/g2/T0"] == 1.0 and self_["alpha/g2/T1"] == 1.0 and self_["tau/g2/T0"] > 2.0
  res = ev(student)
  assert res["alpha/g2/T0"] < 0.9 and res["tau/g2/T0"] < self_["tau/g2/T0"]
  assert res["task_score"] == 100.0 and ev(student) == res  # fixed keys: same draft, same numbers
  with pytest.raises(ValueError, match="task_metric, tokenizer and refs"):
    D.alignment_eval_fn(teacher, prompts, plen, task_metric="accuracy")
