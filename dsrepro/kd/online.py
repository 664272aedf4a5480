"""Online distillation of a draft while it serves: the *online* arm of the domain-draft study (arXiv 2503.07807,
"Training Domain Draft Models for Speculative Decoding"), in the setting of Online Speculative Decoding (Liu et
al., arXiv 2310.07177).

Terms (as 2503.07807 uses them; other tools use "online" / "offline" differently):

- *Online*: the draft serves a stream of queries with speculative decoding (the target verifies its proposals)
  and is updated as it goes, from what serving produced. *Offline*: the training set (prompts, the target's
  responses and, for white-box, its distributions) is built before training (``dsrepro.repro.domain``).
- *White-box*: the loss uses the target's token distributions, FKL(p_target || q_draft) over the vocabulary at
  every served token (:func:`white_box_loss`). *Black-box*: only the target's text is used, cross-entropy on the
  served tokens (:data:`black_box_loss`): a KD loss that receives no teacher; the update never calls the target.

The loop (:func:`online_distill`, on ``dsrepro.train.train_loop``). N queries arrive in C = ceil(N / chunk)
chunks. Chunk c is served by ``speculative_generate(target, current draft)`` (temperature and gamma of the
:class:`OnlineConfig`) right before update u_c = floor(c U / C) (:func:`chunk_steps`): the U updates are spread
evenly over the stream, u_{c+1} - u_c of them after chunk c. Each update takes ``batch_size`` rows drawn without
replacement from the *buffer*: the served sequences of the ``buffer_chunks`` most recent chunks. SD is lossless,
so the served text is distributed as the target's own samples: with equal N, U and batch size, the online arm
and an offline arm on the same queries differ only in WHEN each example is seen (for a few chunks after it was
served, by the draft of that moment) -- in expectation each example is seen U B / N times in both.

White-box signal: the target's distribution at each served position is what its verification pass computed (the
verify call over ``x_n, y_1 .. y_gamma`` gives p_1 .. p_{gamma+1}: p_i for each accepted token, p_{a+1} for the
emitted correction / bonus token). ``speculative_generate`` does not return them, so :func:`teacher_logits`
recomputes them with ONE teacher-forced target forward over the served sequence -- the same numbers up to float
rounding (tests/test_online.py checks them against a hand-run verify pass); a server keeps them from the verify
pass at no cost. They are stored per served row at the response positions only ([rows, N_new, V]) and the
update's jitted step gets no target at all (``frozen`` is empty).

Resumable: train_loop checkpoints the draft; every served chunk is written to ``run_dir/served/chunk_XXXXX.npz``
(tokens and the live SD statistics of the draft that served it) before the update that follows it, and read back
on resume (its logits recomputed). :func:`stream_records` reads the acceptance over the stream.
"""
from __future__ import annotations

import dataclasses
import functools
import os
from pathlib import Path
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from dsrepro import runs
from dsrepro.keys import named_key
from dsrepro.kd import divergences
from dsrepro.models.transformer import check_same_vocab
from dsrepro.sd.decode import join_outputs
from dsrepro.sd.speculative import SpecConfig, speculative_generate
from dsrepro.train import TrainConfig, sft_loss, train_loop

__all__ = ["OnlineConfig", "StreamRecord", "Served", "chunk_steps", "teacher_logits", "serve", "white_box_loss",
           "black_box_loss", "make_white_box_loss", "online_batch_fn", "online_distill", "stream_records"]

SERVED = "served"


@dataclasses.dataclass(frozen=True)
class OnlineConfig:
  """How the online arm serves and learns (hashable, JSON-able: part of the run's identity)."""
  white_box: bool = True        # FKL on the verify pass's distributions; False: CE on the served tokens
  chunk: int = 16               # queries served per chunk
  buffer_chunks: int = 4        # updates draw from the served rows of this many most recent chunks
  gamma: int = 5                # SD block size while serving
  temperature: float = 1.0      # serving temperature (and of the FKL)
  max_new_tokens: int = 64      # response length of a served query

  def __post_init__(self):
    for name in ("chunk", "buffer_chunks", "gamma", "max_new_tokens"):
      v = getattr(self, name)
      if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
        raise ValueError(f"OnlineConfig.{name} must be an integer >= 1, got {v!r}")
    if not self.temperature > 0:
      raise ValueError(f"OnlineConfig.temperature must be > 0 (served text must be the target's samples), got "
                       f"{self.temperature!r}")

  @property
  def box(self) -> str:
    return "white" if self.white_box else "black"


@dataclasses.dataclass(frozen=True)
class StreamRecord:
  """Serving statistics of one chunk: the draft as it was when the chunk arrived (before the updates after it)."""
  chunk: int
  step: int          # updates made before this chunk was served
  queries: int       # queries served so far, this chunk included
  accepted: int      # accepted draft tokens
  drafted: int       # proposed draft tokens (gamma per block)
  tokens: int        # emitted tokens
  calls: int         # target (verify) calls

  @property
  def alpha(self) -> float:
    return self.accepted / self.drafted if self.drafted else float("nan")

  @property
  def tau(self) -> float:
    return self.tokens / self.calls if self.calls else float("nan")


@dataclasses.dataclass
class Served:
  """One served chunk: rows ``prompt_BxP[:plen] + out_BxN[:num]``; ``t_logits_BxNxV`` (white-box only) is the
  target's logits at served token j of row b (the verify pass's distribution of that token)."""
  prompt_BxP: np.ndarray
  plen_B: np.ndarray
  out_BxN: np.ndarray
  num_B: np.ndarray
  accepted_BxK: np.ndarray
  calls_B: np.ndarray
  t_logits_BxNxV: np.ndarray | None = None

  def rows(self, width: int, pad_id: int) -> tuple[np.ndarray, np.ndarray]:
    """(tokens_BxW, loss_mask_BxW) as ``decode.join_outputs``: mask 1 on the served tokens."""
    return join_outputs(self.prompt_BxP, self.plen_B, self.out_BxN, self.num_B, pad_id, width)

  def positions(self) -> tuple[np.ndarray, np.ndarray]:
    """(pos_BxN, mask_BxN): the row position whose logits predict served token j (plen - 1 + j), and j < num."""
    j_N = np.arange(self.out_BxN.shape[1])
    return ((self.plen_B[:, None] - 1 + j_N[None]).astype(np.int32),
            (j_N[None] < self.num_B[:, None]).astype(np.float32))

  def record(self, chunk: int, step: int, queries: int, gamma: int) -> StreamRecord:
    acc = self.accepted_BxK
    return StreamRecord(chunk=chunk, step=step, queries=queries, accepted=int(np.where(acc >= 0, acc, 0).sum()),
                        drafted=int(gamma * (acc >= 0).sum()), tokens=int(self.num_B.sum()),
                        calls=int(self.calls_B.sum()))


def chunk_steps(n_queries: int, chunk: int, updates: int) -> np.ndarray:
  """u_C: chunk c is served right before update ``c U // C`` (C = ceil(N / chunk) chunks, U updates)."""
  if n_queries < 1 or chunk < 1 or updates < 1:
    raise ValueError(f"need n_queries, chunk and updates >= 1, got {n_queries}, {chunk}, {updates}")
  n_chunks = -(-n_queries // chunk)
  return np.arange(n_chunks) * updates // n_chunks


@jax.jit
def _gather_logits(model, tokens_BxW, pos_BxN):
  logits_BxWxV = model(tokens_BxW)[0]
  return jnp.take_along_axis(logits_BxWxV, pos_BxN[..., None], axis=1)


def teacher_logits(target, served: Served, width: int, pad_id: int) -> np.ndarray:
  """The target's logits at every served token, [B, N, V]: one teacher-forced forward over the served rows
  (equal to what the verification passes computed; see the module doc)."""
  tokens_BxW, _ = served.rows(width, pad_id)
  pos_BxN, _ = served.positions()
  return np.asarray(_gather_logits(target, jnp.asarray(tokens_BxW), jnp.asarray(np.minimum(pos_BxN, width - 1))))


def _pad_rows(x, n: int):
  x = np.asarray(x)
  return x if len(x) == n else np.concatenate([x, np.repeat(x[-1:], n - len(x), 0)])


def serve(target, draft, prompt_BxP, plen_B, cfg: OnlineConfig, key, *, pad_id: int, eos_id: int | None,
          rows: int | None = None) -> Served:
  """Speculative decoding of one chunk (padded to ``rows`` rows so every chunk has one jit shape)."""
  n = len(prompt_BxP)
  rows = rows or n
  spec = SpecConfig(gamma=cfg.gamma, max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature,
                    eos_id=eos_id, pad_id=pad_id)
  out = speculative_generate(target, draft, _pad_rows(prompt_BxP, rows), _pad_rows(plen_B, rows), spec, key)
  take = lambda x: np.asarray(x)[:n]
  return Served(prompt_BxP=np.asarray(prompt_BxP), plen_B=np.asarray(plen_B), out_BxN=take(out.tokens_BxN),
                num_B=take(out.num_B), accepted_BxK=take(out.accepted_BxK), calls_B=take(out.target_calls_B))


# ------------------------------------------------------------------------------------------------ losses


def white_box_loss(student, batch: dict, temperature: float = 1.0):
  """FKL(p_target || q_draft) at the served tokens, from the STORED target logits ``batch["t_logits"]`` [B, N, V]
  (the verify pass's distributions); ``batch["pos"]`` [B, N] are the row positions predicting them, ``batch["mask"]``
  [B, N] marks served tokens. Mean over served tokens; aux "kd_loss", "tokens"."""
  logits_BxWxV = student(batch["tokens"])[0]
  s_logits_BxNxV = jnp.take_along_axis(logits_BxWxV, batch["pos"][..., None], axis=1)
  loss = divergences.divergence_loss("fkl", batch["t_logits"], s_logits_BxNxV, batch["mask"], temperature)
  return loss, {"kd_loss": loss, "tokens": jnp.sum(batch["mask"])}


@functools.lru_cache(maxsize=8)
def make_white_box_loss(temperature: float = 1.0) -> Callable:
  """:func:`white_box_loss` at ``temperature`` as a train_loop loss_fn (one function object per temperature, so
  train_loop's compiled-step cache is shared between runs)."""

  def loss_fn(student, batch):
    return white_box_loss(student, batch, temperature)

  return loss_fn


# Black-box: next-token cross-entropy on the target's tokens (the SFT loss on ``{"tokens", "loss_mask"}``). It takes
# no teacher argument, so nothing the target computes can enter it.
black_box_loss = sft_loss


# ------------------------------------------------------------------------------------------------ the loop


def _chunk_path(run_dir: Path, c: int) -> Path:
  return run_dir / SERVED / f"chunk_{c:05d}.npz"


def _save(path: Path, s: Served, rec: StreamRecord) -> None:
  with runs.atomic_path(path) as tmp:
    with open(tmp, "wb") as f:
      np.savez(f, prompt_BxP=s.prompt_BxP, plen_B=s.plen_B, out_BxN=s.out_BxN, num_B=s.num_B,
               accepted_BxK=s.accepted_BxK, calls_B=s.calls_B,
               record=np.asarray([getattr(rec, f.name) for f in dataclasses.fields(StreamRecord)], np.int64))


def _load(path: Path) -> tuple[Served, StreamRecord]:
  with np.load(path) as z:
    s = Served(**{k: z[k] for k in ("prompt_BxP", "plen_B", "out_BxN", "num_B", "accepted_BxK", "calls_B")})
    rec = StreamRecord(*(int(v) for v in z["record"]))
  return s, rec


def online_batch_fn(target, prompts_NxP, plen_N, cfg: OnlineConfig, batch_size: int, updates: int,
                    run_dir: str | os.PathLike, *, width: int, pad_id: int, eos_id: int | None,
                    teacher_fn: Callable = None) -> Callable:
  """train_loop's batch_fn of the online arm (module doc): serves chunk c with the CURRENT draft at step u_c,
  stores it, and returns ``batch_size`` rows drawn from the buffer: ``{"tokens", "loss_mask"}`` (black-box) or
  ``{"tokens", "pos", "mask", "t_logits"}`` (white-box). ``teacher_fn(target, served) -> [B, N, V]`` (default
  :func:`teacher_logits`) is called for white-box only."""
  run_dir = Path(run_dir)
  prompts_NxP, plen_N = np.asarray(prompts_NxP, np.int32), np.asarray(plen_N, np.int32)
  steps_C = chunk_steps(len(prompts_NxP), cfg.chunk, updates)
  buffer: dict[int, Served] = {}
  logits = teacher_fn or (lambda t, s: teacher_logits(t, s, width, pad_id))

  def ensure(c: int, step: int, model, key) -> None:
    if c in buffer:
      return
    path = _chunk_path(run_dir, c)
    if path.exists():
      served, _ = _load(path)
    else:
      if steps_C[c] != step:
        raise RuntimeError(f"served chunk {c} (due before update {steps_C[c]}) is missing from {run_dir} at "
                           f"update {step}: delete the run directory and rerun")
      sl = slice(c * cfg.chunk, (c + 1) * cfg.chunk)
      served = serve(target, model, prompts_NxP[sl], plen_N[sl], cfg, named_key(key, f"serve/{c}"),
                     pad_id=pad_id, eos_id=eos_id, rows=cfg.chunk)
      _save(path, served, served.record(c, step, min((c + 1) * cfg.chunk, len(prompts_NxP)), cfg.gamma))
    if cfg.white_box:
      served.t_logits_BxNxV = logits(target, served)
    buffer[c] = served

  def batch_fn(step, model, key):
    n_avail = int(np.searchsorted(steps_C, step, side="right"))
    window = range(max(0, n_avail - cfg.buffer_chunks), n_avail)
    for c in window:
      ensure(c, step, model, key)
    for c in [c for c in buffer if c not in window]:
      del buffer[c]
    chunks = [buffer[c] for c in window]
    n_rows = sum(len(s.plen_B) for s in chunks)
    pick_B = np.asarray(jax.random.choice(named_key(key, "rows"), n_rows, (batch_size,), replace=n_rows < batch_size))
    cat = lambda xs: np.concatenate(xs)[pick_B]
    rows = [s.rows(width, pad_id) for s in chunks]
    tokens_BxW = cat([r[0] for r in rows])
    if not cfg.white_box:
      return {"tokens": tokens_BxW, "loss_mask": cat([r[1] for r in rows])}
    pos = [s.positions() for s in chunks]
    return {"tokens": tokens_BxW, "pos": np.minimum(cat([q[0] for q in pos]), width - 1),
            "mask": cat([q[1] for q in pos]), "t_logits": cat([s.t_logits_BxNxV for s in chunks])}

  return batch_fn


def online_distill(student, target, prompts_NxP, plen_N, cfg: OnlineConfig, train_cfg: TrainConfig,
                   run_dir: str | os.PathLike, *, pad_id: int, eos_id: int | None, width: int | None = None,
                   stop_after: int | None = None, desc: str | None = None, teacher_fn: Callable | None = None):
  """Serve the N queries ``prompts_NxP`` (right-padded, lengths ``plen_N``) in order with a COPY of ``student`` as
  draft, updating it ``train_cfg.steps`` times with ``train_cfg.batch_size`` rows per update (module doc); returns
  the trained draft. ``width``: the row width of the training batches (default P + max_new_tokens). A DONE
  ``run_dir`` is loaded, not retrained; an interrupted one resumes exactly (``stop_after`` simulates that)."""
  check_same_vocab(target, student)
  P = np.shape(prompts_NxP)[1]
  width = width or P + cfg.max_new_tokens
  need = P + cfg.max_new_tokens + cfg.gamma + 1
  if width < P + cfg.max_new_tokens or need > min(target.cfg.max_len, student.cfg.max_len):
    raise ValueError(f"prompts of width {P} + {cfg.max_new_tokens} new tokens (+ gamma + 1 = {need}) do not fit "
                     f"the row width {width} / the models' max_len")
  batch_fn = online_batch_fn(target, prompts_NxP, plen_N, cfg, train_cfg.batch_size, train_cfg.steps, run_dir,
                             width=width, pad_id=pad_id, eos_id=eos_id, teacher_fn=teacher_fn)
  loss = make_white_box_loss(float(cfg.temperature)) if cfg.white_box else black_box_loss
  return train_loop(nnx.clone(student), loss, batch_fn, train_cfg, run_dir, frozen={},
                    desc=desc or f"online[{cfg.box}-box]", stop_after=stop_after)


def stream_records(run_dir: str | os.PathLike) -> list[StreamRecord]:
  """The acceptance of the draft over the served stream, one record per chunk in order."""
  return [_load(p)[1] for p in sorted((Path(run_dir) / SERVED).glob("chunk_*.npz"))]
