"""The domain-draft study (arXiv 2503.07807, "Training Domain Draft Models for Speculative Decoding: Best
Practices and Insights"): its cached artefacts -- per-domain training sets for the three data scenarios, domain
drafts distilled offline / online with white-box / black-box losses, and the data-scaling runs.

Terms (other tools use "online" / "offline" differently):

- *Domain*: one task of ``p.domain_tasks`` (e.g. GSM8K math, MBPP code). *Domain target*: the target fine-tuned on
  the domain, ``artefacts.target(p, task)`` (the SFT target of the DistillSpec figures). *Generic draft*: the
  pretrained base of the draft size, ``artefacts.base_model(p, p.draft_size)`` -- the pretraining stage only,
  never fine-tuned on a domain. Every domain draft is distilled FROM the generic draft.
- *White-box*: the loss uses the target's token distributions (FKL over the vocabulary). *Black-box*: only the
  target's text is used (cross-entropy on the target's sampled tokens); the training step gets no target.
- *Offline*: the training set (prompts, the target's responses; for white-box its distributions on them) is built
  before training, then the draft trains for U updates. *Online*: the draft serves the N queries with speculative
  decoding and is updated as it goes from what serving produced (``dsrepro.kd.online``).
- Data scenarios (where the N training prompts come from): *historical* = the task's training prompts (user
  queries seen before), answered by the target; *curated* = the task's ground-truth prompt + target texts (no
  target involvement in making the text; a white-box arm still uses the target's distributions on it);
  *synthetic* = prompts the target samples itself after a short per-domain prefix (Magpie-style, :data:`PROMPTING`),
  cut at the task's answer marker, then answered by the target.

Budgets (equal for every compared arm; :func:`budget` reads what each run used): N examples (queries), U updates
of B rows, one optimizer and schedule, one start (the generic draft). An offline set is built once per (domain,
scenario, seed) at N examples, cached, and shared by the white- and black-box arms; the scaling runs train on its
first n rows with the SAME U updates (equal compute, more data). Online serves the same N historical prompts as
the offline historical set, in chunks of B, with U updates. Responses are the target's samples at T = 1 (the
online arm serves at T = 1, and SD is lossless, so both arms train on text of one distribution), R =
:func:`response_len` new tokens. Offline white-box computes the target's distributions inside each update's loss
(``kd.distill.kd_loss``): the same values as storing them when the set is built (a function of the fixed set)
without N x L x V floats on disk. Seeds: each of ``seeds(p)`` draws its own query subset, its own samples and its
own training order, so intervals cover data and training randomness (bootstrap over seeds x prompts).
"""
from __future__ import annotations

import dataclasses
import functools
from pathlib import Path

import jax
import numpy as np
from flax import nnx
from tqdm.auto import tqdm

from dsrepro import runs
from dsrepro import tokenizer as tok_lib
from dsrepro.keys import named_key
from dsrepro.kd import distill, online
from dsrepro.kd.batches import clean_prompts
from dsrepro.kd.recipes import KDConfig
from dsrepro.repro import artefacts as ex
from dsrepro.repro.profiles import Profile
from dsrepro.sd.decode import DecodeConfig, generate, join_outputs
from dsrepro.train import TrainConfig, sft_batch_fn, train_loop, with_steps

MODES, BOXES, SCENARIOS = ("offline", "online"), ("white", "black"), ("historical", "curated", "synthetic")
GENERIC = "generic draft"
SERVE_T = 1.0  # temperature of every target response (offline sets) and of online serving


@dataclasses.dataclass(frozen=True)
class Prompting:
  """Synthetic prompts of a domain: the target continues ``prefix``; the text is cut after ``marker`` (the end of
  every prompt of the task, dsrepro.data), which is appended when the sample does not reach it."""
  prefix: str
  marker: str


PROMPTING = {
    "gsm8k": Prompting("Question:", "\nAnswer:"),
    "mbpp": Prompting("Write a python function", "\nCode:"),
    "xsum": Prompting("Summarize the following article.\n", "\nSummary:"),
    "cnn_dailymail": Prompting("Summarize the following article.\n", "\nSummary:"),
    "wmt14_en_de": Prompting("Translate English to German.\nEnglish:", "\nGerman:"),
    "alpaca": Prompting("Below is an instruction that describes a task", "### Response:"),
}

@dataclasses.dataclass(frozen=True)
class Settings:
  """The study's knobs at one profile (:func:`settings`)."""
  tasks: tuple[str, ...]
  examples: int          # N
  updates: int           # U
  batch: int             # B
  sizes: tuple[int, ...]  # scaling example counts, ascending, the last = N
  seeds: tuple[int, ...]
  buffer: int
  lr: float
  gamma: int             # SD block size of online serving and of the evaluation (p.mid_gamma)
  response_len: int      # R


def response_len(p: Profile) -> int:
  """New tokens per target response: max_target_len, capped so an SD run (prompt + R + gamma + 1) fits."""
  return min(p.max_target_len, ex.context_len(p) - p.max_prompt_len - p.mid_gamma - 1)


def settings(p: Profile) -> Settings:
  """The study's knobs from the profile's ``domain_*`` fields (the scaling sizes end with N)."""
  n = p.domain_examples
  return Settings(tasks=p.domain_tasks, examples=n, updates=p.domain_updates, batch=p.domain_batch,
                  sizes=tuple(sorted(set(p.domain_sizes) | {n})),
                  seeds=tuple(1000 * p.seed + i for i in range(p.domain_seeds)), buffer=p.domain_buffer,
                  lr=p.domain_lr, gamma=p.mid_gamma, response_len=response_len(p))


def with_tasks(p: Profile, tasks: str) -> Profile:
  """``p`` with its domains replaced by a comma-separated list (a notebook's ``tasks`` parameter; "" = keep)."""
  if not tasks.strip():
    return p
  return dataclasses.replace(p, domain_tasks=tuple(t.strip() for t in tasks.split(",")))


@dataclasses.dataclass(frozen=True)
class Recipe:
  """One distilled domain draft: how it learns (mode x box) and from what (scenario, n examples)."""
  mode: str
  box: str
  scenario: str = "historical"
  n: int = 0

  def __post_init__(self):
    if self.mode not in MODES or self.box not in BOXES or self.scenario not in SCENARIOS:
      raise ValueError(f"unknown recipe {self}; modes {MODES}, boxes {BOXES}, scenarios {SCENARIOS}")
    if self.mode == "online" and self.scenario != "historical":
      raise ValueError("the online arm serves the historical queries")

  def label(self, s: Settings) -> str:
    """e.g. "offline white-box", "offline black-box, synthetic", "offline white-box, n=64"."""
    extra = ([self.scenario] if self.scenario != "historical" else []) + ([f"n={self.n}"] if self.n != s.examples
                                                                        else [])
    return ", ".join([f"{self.mode} {self.box}-box"] + extra)


def main_recipes(s: Settings) -> list[Recipe]:
  """The 2 x 2: offline / online x white / black, N historical queries."""
  return [Recipe(m, b, "historical", s.examples) for m in MODES for b in BOXES]


def scenario_recipes(s: Settings) -> list[Recipe]:
  """Offline, white and black, every data scenario at N examples."""
  return [Recipe("offline", b, sc, s.examples) for sc in SCENARIOS for b in BOXES]


def scaling_recipes(s: Settings) -> list[Recipe]:
  """Offline historical, white and black, at every size (same U updates)."""
  return [Recipe("offline", b, "historical", n) for b in BOXES for n in s.sizes]


# ------------------------------------------------------------------------------------------------ models


def generic_draft(p: Profile, root=None) -> ex.Trained:
  return ex.base_model(p, p.draft_size, root)


def domain_target(p: Profile, task: str, root=None) -> ex.Trained:
  return ex.target(p, task, root)


@functools.lru_cache(maxsize=256)
def _load(run_dir: Path):
  return runs.load_model(run_dir)


def _trained(run_dir: Path) -> ex.Trained:
  return ex.Trained(_load(run_dir), run_dir.name, run_dir)


# ------------------------------------------------------------------------------------------------ data


@dataclasses.dataclass(frozen=True)
class DomainSet:
  """An offline training set: rows ``[bos] + prompt + response`` (``tokens_NxW``, mask 1 on the response)."""
  id: str
  tokens_NxW: np.ndarray
  loss_mask_NxW: np.ndarray
  prompt_len_N: np.ndarray
  info: dict

  def head(self, n: int) -> dict:
    """The first n examples as distillation data (``kd.distill`` format)."""
    if n > len(self.tokens_NxW):
      raise ValueError(f"the set has {len(self.tokens_NxW)} examples, {n} asked")
    return {"tokens": self.tokens_NxW[:n], "loss_mask": self.loss_mask_NxW[:n], "prompt_len": self.prompt_len_N[:n]}


def query_rows(p: Profile, task: str, seed: int, root=None) -> np.ndarray:
  """The N training examples a seed draws (historical queries, curated texts, the online stream), in order."""
  n_train, n = len(ex.task_data(p, task, root).train_prompt_len), settings(p).examples
  if n > n_train:
    raise ValueError(f"domain_examples={n} exceeds the {n_train} training examples of {task}")
  return np.asarray(jax.random.permutation(named_key(seed, f"domain/{task}/queries"), n_train))[:n]


def historical_prompts(p: Profile, task: str, seed: int, root=None) -> tuple[np.ndarray, np.ndarray]:
  """(prompts_NxP, plen_N) of the seed's N historical queries (right-padded, P = the task's prompt width)."""
  td, rows = ex.task_data(p, task, root), query_rows(p, task, seed, root)
  plen_N = td.train_prompt_len[rows].astype(np.int32)
  return clean_prompts(td.train["tokens"][rows], plen_N, td.max_prompt_len, td.pad_id), plen_N


def _generate(model, prompts_NxP, plen_N, cfg: DecodeConfig, key, batch: int, desc: str = "generate"):
  """Plain sampling in fixed-size batches (the last padded): (out_NxT, num_N)."""
  n, outs, nums = len(prompts_NxP), [], []
  for i, a in enumerate(tqdm(range(0, n, batch), desc=desc, leave=False, dynamic_ncols=True)):
    pad = lambda x: np.concatenate([x[a:a + batch]] + [x[-1:]] * max(0, a + batch - n))
    o = generate(model, pad(prompts_NxP), pad(plen_N), cfg, jax.random.fold_in(key, i))
    outs.append(np.asarray(o.tokens_BxN)[:n - a])
    nums.append(np.asarray(o.num_B)[:n - a])
  return np.concatenate(outs), np.concatenate(nums)


def _respond(p: Profile, td, target, prompts_NxP, plen_N, key):
  cfg = DecodeConfig(max_new_tokens=response_len(p), temperature=SERVE_T, eos_id=td.eos_id, pad_id=td.pad_id)
  out_NxT, num_N = _generate(target, prompts_NxP, plen_N, cfg, key, p.eval_batch, f"{td.task} responses")
  return join_outputs(prompts_NxP, plen_N, out_NxT, num_N, td.pad_id, p.pad_len)


def synthetic_prompts(p: Profile, td, target, n: int, key) -> tuple[list[str], float]:
  """n prompts the target writes after the domain's prefix (:data:`PROMPTING`), cut after the answer marker;
  returns them and the fraction that reached the marker by themselves."""
  rule = PROMPTING[td.task]
  pre_1xK, pre_len_1 = tok_lib.encode_prompts(td.tokenizer, [rule.prefix], td.max_prompt_len, pad_to=None,
                                              pad_multiple=1)
  k = int(pre_len_1[0])
  cfg = DecodeConfig(max_new_tokens=max(1, td.max_prompt_len - k), temperature=SERVE_T, eos_id=td.eos_id,
                     pad_id=td.pad_id)
  out_NxT, num_N = _generate(target, np.repeat(pre_1xK, n, 0), np.repeat(pre_len_1, n), cfg, key, p.eval_batch,
                             f"{td.task} synthetic prompts")
  texts, reached = [], 0
  for row, m in zip(out_NxT, num_N):
    text = tok_lib.decode_until_eos(td.tokenizer, np.concatenate([pre_1xK[0, 1:k], row[:m]]))
    cut = text.find(rule.marker, len(rule.prefix))
    reached += cut >= 0
    texts.append(text[:cut + len(rule.marker)] if cut >= 0 else text.rstrip() + rule.marker)
  return texts, reached / n


def dataset(p: Profile, task: str, scenario: str, seed: int, root=None) -> DomainSet:
  """The seed's offline set of a scenario at N examples (built once, cached; module doc)."""
  if scenario not in SCENARIOS:
    raise ValueError(f"unknown data scenario {scenario!r}; known: {SCENARIOS}")
  td, s = ex.task_data(p, task, root), settings(p)
  target = None if scenario == "curated" else domain_target(p, task, root)
  cfg = dict(task=task, scenario=scenario, seed=seed, n=s.examples, target=target and target.id, tok=td.tok_id,
             R=s.response_len, T=SERVE_T, width=p.pad_len, n_train=p.n_train, prompt=p.max_prompt_len,
             target_len=p.max_target_len, prompting=PROMPTING.get(task) if scenario == "synthetic" else None)
  run_dir = runs.run_dir_for(ex.profile_root(p, root), f"domain-data-{task}-{scenario}", cfg)
  path = run_dir / "data.npz"
  if not runs.is_done(run_dir):
    print(f"[dsrepro] domain data {task}/{scenario} (seed {seed}, {p.name}) -> {run_dir}", flush=True)
    key, info = named_key(seed, f"domain/{task}/{scenario}"), {}
    if scenario == "curated":
      rows = query_rows(p, task, seed, root)
      tokens, mask, plen = td.train["tokens"][rows], td.train["loss_mask"][rows], td.train_prompt_len[rows]
    else:
      if scenario == "historical":
        prompts, plen = historical_prompts(p, task, seed, root)
      else:
        texts, info["marker_rate"] = synthetic_prompts(p, td, target.model, s.examples, named_key(key, "prompts"))
        prompts, plen = tok_lib.encode_prompts(td.tokenizer, texts, td.max_prompt_len, pad_to=td.max_prompt_len)
        info["examples_text"] = texts[:3]
      tokens, mask = _respond(p, td, target.model, prompts, plen, named_key(key, "responses"))
    with runs.atomic_path(path) as tmp:
      with open(tmp, "wb") as f:
        np.savez(f, tokens=np.asarray(tokens, np.int32), loss_mask=np.asarray(mask, np.float32),
                 prompt_len=np.asarray(plen, np.int32))
    info.update(examples=int(len(tokens)), response_tokens=int(np.asarray(mask).sum()))
    runs.mark_done(run_dir, info)
  with np.load(path) as z:
    arrays = (z["tokens"], z["loss_mask"], z["prompt_len"])
  info = {k: v for k, v in runs.read_json(run_dir / runs.DONE).items() if k != runs.CHECKSUMS}
  return DomainSet(run_dir.name, *arrays, info)


# ------------------------------------------------------------------------------------------------ drafts


def train_config(p: Profile, seed: int) -> TrainConfig:
  """Every arm's optimizer: the profile's KD optimizer at ``domain_lr``, U updates of B rows, cosine schedule,
  a log record per update (so :func:`budget` can count the tokens each arm trained on)."""
  s = settings(p)
  base = TrainConfig(batch_size=s.batch, learning_rate=s.lr, optimizer=p.kd.optimizer, schedule="cosine",
                     clip_norm=p.kd.clip_norm, weight_decay=p.kd.weight_decay)
  return dataclasses.replace(with_steps(base, s.updates), log_every=1, seed=seed)


def online_config(p: Profile, box: str) -> online.OnlineConfig:
  s = settings(p)
  return online.OnlineConfig(white_box=box == "white", chunk=s.batch, buffer_chunks=s.buffer, gamma=s.gamma,
                             temperature=SERVE_T, max_new_tokens=s.response_len)


def draft(p: Profile, task: str, recipe: Recipe, seed: int, root=None) -> ex.Trained:
  """The domain draft of ``recipe`` trained with ``seed`` (cached; resumable)."""
  s, generic, td = settings(p), generic_draft(p, root), ex.task_data(p, task, root)
  tcfg = train_config(p, seed)
  n = recipe.n or s.examples
  if recipe.mode == "online":
    if n != s.examples:
      raise ValueError(f"the online arm serves all N={s.examples} queries (got n={n})")
    target, ocfg = domain_target(p, task, root), online_config(p, recipe.box)
    cfg = dict(recipe=recipe, train=tcfg, generic=generic.id, target=target.id, online=ocfg, task=task,
               queries=dict(seed=seed, n=n, n_train=p.n_train, prompt=p.max_prompt_len, tok=td.tok_id))
    run_dir = runs.run_dir_for(ex.profile_root(p, root), f"domain-{task}-online-{recipe.box}", cfg)
    if not runs.is_done(run_dir):
      print(f"[dsrepro] {recipe.label(s)} draft on {task} (seed {seed}, {p.name}) -> {run_dir}", flush=True)
      prompts, plen = historical_prompts(p, task, seed, root)
      online.online_distill(generic.model, target.model, prompts, plen, ocfg, tcfg, run_dir, pad_id=td.pad_id,
                            eos_id=td.eos_id, width=p.pad_len, desc=f"{task} {recipe.label(s)}")
    return _trained(run_dir)
  data = dataset(p, task, recipe.scenario, seed, root)
  teacher = domain_target(p, task, root) if recipe.box == "white" else None  # black-box: never loaded
  cfg = dict(recipe=recipe, train=tcfg, generic=generic.id, data=data.id, n=n, target=teacher and teacher.id)
  run_dir = runs.run_dir_for(ex.profile_root(p, root), f"domain-{task}-offline-{recipe.box}", cfg)
  if not runs.is_done(run_dir):
    print(f"[dsrepro] {recipe.label(s)} draft on {task} (seed {seed}, {p.name}) -> {run_dir}", flush=True)
    if recipe.box == "white":  # FKL with the target's distributions on the set (computed in each update's loss)
      distill.distill(generic.model, teacher.model, KDConfig(divergence="fkl",
                      data="ground_truth", temperature=SERVE_T), tcfg, data.head(n), run_dir, pad_id=td.pad_id,
                      eos_id=td.eos_id, desc=f"{task} {recipe.label(s)}")
    else:  # CE on the target's tokens: no target anywhere in the step
      rows = {k: v for k, v in data.head(n).items() if k != "prompt_len"}
      train_loop(nnx.clone(generic.model), online.black_box_loss, sft_batch_fn(rows, tcfg.batch_size, tcfg.seed),
                 tcfg, run_dir, desc=f"{task} {recipe.label(s)}")
  return _trained(run_dir)


def drafts(p: Profile, task: str, recipe: Recipe, root=None) -> list[ex.Trained]:
  """The recipe's drafts, one per seed of ``settings(p).seeds``."""
  return [draft(p, task, recipe, seed, root) for seed in settings(p).seeds]


def budget(t: ex.Trained) -> dict:
  """What a trained arm used: updates, rows per update, training examples (queries), and target tokens trained on
  (summed over the updates' batches, from the run's per-update log)."""
  cfg = runs.read_json(t.run_dir / "config.json")["config"]
  log = t.log()
  train = cfg["train"]
  return dict(examples=int(cfg.get("n") or cfg["queries"]["n"]), updates=len(log), batch=int(train["batch_size"]),
              tokens_seen=int(sum(r.get("tokens", 0) for r in log)))


def stream(t: ex.Trained) -> list[online.StreamRecord]:
  """The online arm's acceptance over the served query stream (one record per chunk)."""
  return online.stream_records(t.run_dir)
