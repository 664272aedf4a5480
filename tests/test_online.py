"""The online arm of the domain-draft study (dsrepro.kd.online, arXiv 2503.07807): the white-box training signal is
the target's verify-pass distribution on the served tokens, the black-box arm never reads target logits, the
stream schedule, resumption."""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from dsrepro.kd import divergences
from dsrepro.kd import online
from dsrepro.models.transformer import ModelConfig, Transformer, make_model
from dsrepro.sd.decode import prefill
from dsrepro.train import TrainConfig

V, PAD, BOS = 40, 0, 1
P, NEW, G = 6, 8, 3
CFG = ModelConfig(vocab_size=V, d_model=32, n_layers=1, n_heads=2, d_ff=64, max_len=32)
OC = online.OnlineConfig(white_box=True, chunk=4, buffer_chunks=2, gamma=G, temperature=1.0, max_new_tokens=NEW)
TC = TrainConfig(steps=6, batch_size=4, learning_rate=0.1, schedule="constant", ckpt_every=3, log_every=1)


def prompts(n=8, seed=0):
  rng = np.random.default_rng(seed)
  plen = rng.integers(2, P + 1, n).astype(np.int32)
  tok = np.full((n, P), PAD, np.int32)
  for i, k in enumerate(plen):
    tok[i, :k] = [BOS] + list(rng.integers(3, V, k - 1))
  return tok, plen


def sharp(seed, scale=6.0):
  m = make_model(CFG, seed)
  m.embed.embedding[...] = m.embed.embedding[...] * scale
  return m


class RaisingTarget(Transformer):
  """A target whose logits must never be read."""

  def __call__(self, *args, **kwargs):
    raise AssertionError("the target's logits were read")


def leaves(m):
  return [np.asarray(x) for x in jax.tree.leaves(nnx.state(m, nnx.Param))]


def test_chunk_schedule():
  assert online.chunk_steps(8, 4, 6).tolist() == [0, 3]      # 2 chunks, 3 updates after each
  assert online.chunk_steps(10, 4, 6).tolist() == [0, 2, 4]  # a short last chunk still counts
  assert online.chunk_steps(16, 4, 2).tolist() == [0, 0, 1, 1]  # fewer updates than chunks
  with pytest.raises(ValueError):
    online.OnlineConfig(temperature=0.0)


def test_training_signal_is_the_verify_pass_distribution():
  """The stored white-box signal at served token j equals the target's distribution that SD's verify call
  computed for that token: a hand-run of the verify passes (KV cache, block by block, as sd.speculative does)
  against the stored logits; and the loss is the FKL against exactly those distributions."""
  target, draft = sharp(1), make_model(CFG, 2)
  tok, plen = prompts(4)
  served = online.serve(target, draft, tok, plen, OC, jax.random.key(3), pad_id=PAD, eos_id=None)
  assert (served.num_B == NEW).all() and (served.accepted_BxK[:, 0] >= 0).all()
  width = P + NEW
  t_BxNxV = online.teacher_logits(target, served, width, PAD)
  checked = 0
  for b in range(len(tok)):
    seq = np.concatenate([tok[b, :plen[b]], served.out_BxN[b]])
    _, cache = prefill(target, jnp.asarray(tok[b:b + 1]), jnp.asarray(plen[b:b + 1]), P + NEW + G + 1)
    n, j = int(plen[b]) - 1, 0
    for a in served.accepted_BxK[b]:
      if a < 0:
        break
      feed = np.full(G + 1, PAD, np.int32)
      part = seq[n:n + G + 1]
      feed[:len(part)] = part        # x_n, then the served tokens (= the accepted draft tokens, then z)
      verify_1xG1xV, cache = target(jnp.asarray(feed[None]), cache.rollback(jnp.asarray([n], jnp.int32)))
      count = min(int(a) + 1, NEW - j)
      np.testing.assert_allclose(t_BxNxV[b, j:j + count], np.asarray(verify_1xG1xV[0, :count]), atol=2e-4)
      j, n, checked = j + count, n + count, checked + count
    assert j == NEW
  assert checked == served.num_B.sum()
  # the loss is the FKL from these distributions to the draft's, over the served tokens
  tokens_BxW, mask_BxW = served.rows(width, PAD)
  pos_BxN, mask_BxN = served.positions()
  batch = {"tokens": jnp.asarray(tokens_BxW), "pos": jnp.asarray(pos_BxN), "mask": jnp.asarray(mask_BxN),
           "t_logits": jnp.asarray(t_BxNxV)}
  loss, aux = online.white_box_loss(draft, batch)
  full_t = np.asarray(target(jnp.asarray(tokens_BxW))[0])[:, :-1][mask_BxW[:, 1:] > 0].reshape(4, NEW, V)
  full_s = np.asarray(draft(jnp.asarray(tokens_BxW))[0])[:, :-1][mask_BxW[:, 1:] > 0].reshape(4, NEW, V)
  want = float(np.mean(divergences.fkl(jnp.asarray(full_t), jnp.asarray(full_s))))
  np.testing.assert_allclose(float(loss), want, rtol=1e-4)
  assert float(aux["tokens"]) == 4 * NEW


def test_online_white_box_batches_carry_the_stored_signal(tmp_path):
  target, draft = sharp(1), make_model(CFG, 2)
  tok, plen = prompts(8)
  fn = online.online_batch_fn(target, tok, plen, OC, 4, 6, tmp_path, width=P + NEW, pad_id=PAD, eos_id=None)
  batch = fn(0, draft, jax.random.key(0))
  assert set(batch) == {"tokens", "pos", "mask", "t_logits"} and batch["t_logits"].shape == (4, NEW, V)
  full = np.asarray(target(jnp.asarray(batch["tokens"]))[0])
  at_pos = np.take_along_axis(full, batch["pos"][..., None], axis=1)
  m = batch["mask"] > 0
  np.testing.assert_allclose(batch["t_logits"][m], at_pos[m], atol=2e-4)
  assert [r.chunk for r in online.stream_records(tmp_path)] == [0]  # only chunk 0 is due before update 0


@pytest.mark.parametrize("white_box", [False, True])
def test_black_box_never_reads_target_logits(tmp_path, monkeypatch, white_box):
  """The target is a RaisingTarget everywhere but inside serving (which needs the verify pass by definition):
  the black-box loop completes; the white-box loop, which needs the target's distributions, raises."""
  real = sharp(1)
  serve = online.serve
  monkeypatch.setattr(online, "serve", lambda target, *a, **k: serve(real, *a, **k))
  raising = RaisingTarget(CFG, nnx.Rngs(params=0))
  tok, plen = prompts(8)
  cfg = dataclasses.replace(OC, white_box=white_box)
  run = lambda: online.online_distill(make_model(CFG, 2), raising, tok, plen, cfg, TC, tmp_path, pad_id=PAD,
                                      eos_id=None)
  if white_box:
    with pytest.raises(AssertionError, match="logits were read"):
      run()
  else:
    assert len(online.stream_records(tmp_path)) == 0
    run()
    assert [r.queries for r in online.stream_records(tmp_path)] == [4, 8]


def test_online_loop_updates_the_draft_and_resumes_exactly(tmp_path):
  target, student = sharp(1), make_model(CFG, 2)
  tok, plen = prompts(8)
  run = lambda d, **kw: online.online_distill(student, target, tok, plen, OC, TC, tmp_path / d, pad_id=PAD,
                                              eos_id=None, **kw)
  full = run("full")
  assert not all(np.array_equal(a, b) for a, b in zip(leaves(full), leaves(student)))  # the draft learned
  recs = online.stream_records(tmp_path / "full")
  assert [(r.chunk, r.step, r.queries) for r in recs] == [(0, 0, 4), (1, 3, 8)]
  assert all(0 <= r.alpha <= 1 and r.drafted == G * r.calls and r.tokens == 4 * NEW for r in recs)
  from dsrepro import runs
  log = runs.read_metrics(tmp_path / "full")
  assert [r["step"] for r in log] == list(range(1, TC.steps + 1)) and all(r["tokens"] > 0 for r in log)
  run("cut", stop_after=4)  # killed after update 4: resumes from the checkpoint at 3, chunk 1 read back from disk
  assert len(online.stream_records(tmp_path / "cut")) == 2
  resumed = run("cut")
  for a, b in zip(leaves(full), leaves(resumed)):
    np.testing.assert_array_equal(a, b)
