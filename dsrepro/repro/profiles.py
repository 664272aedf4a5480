"""Experiment profiles as code (big_vision style): ``smoke`` (seconds, tests), ``quick`` (2-core CPU, minutes),
``full`` (one GPU/TPU, hours). Notebooks take a profile NAME (a primitive in their papermill parameters cell) and
call :func:`get_profile`; ``get_profile(name, **overrides)`` changes any field, e.g. ``tasks=("xsum",)``.

Scale choices. Our models are trained from scratch (no hub access), so lengths are capped well below the paper's
(DistillSpec App. C: e.g. GSM8K 256/320 tokens); ``max_prompt_len`` / ``max_target_len`` are caps applied on top of
each task's own limits, prompts are truncated from the left, targets from the right.
"""
from __future__ import annotations

import dataclasses

from dsrepro.train import TrainConfig, with_steps


@dataclasses.dataclass(frozen=True)
class Profile:
  name: str
  tasks: tuple[str, ...]            # Fig. 1, 2, 3, 5, Table D.1
  fig4_tasks: tuple[str, ...]       # the data x divergence grid
  adaspec_tasks: tuple[str, ...]
  garden: tuple[str, ...]           # Fig. 6 sizes, smallest first; the smallest is the garden's draft
  target_size: str
  draft_size: str
  vocab_size: int
  max_prompt_len: int
  max_target_len: int
  n_train: int                      # training examples per task (0 = all)
  sft_target: TrainConfig
  sft_draft: TrainConfig
  sft_garden: TrainConfig           # Fig. 6 sizes that are neither the task's target nor its draft
  kd: TrainConfig                   # every distillation run (DistillSpec, AdaSPEC, garden)
  kd_grid_steps: int                # steps of each Fig. 4 grid cell
  n_eval: int                       # held-out prompts for acceptance / tau / task score
  eval_batch: int
  max_new_tokens: int               # generation length at evaluation and for KD-generated data
  gammas: tuple[int, ...] = (3, 5, 7)
  temperatures: tuple[float, ...] = (0.0, 1.0)
  n_latency_prompts: int = 4        # batch-1 wall-time measurements
  track_points: int = 3             # alignment evaluations during each KD run (Fig. 3a)
  lenience_eps: tuple[float, ...] = (1.0, 0.5, 0.2, 0.1, 0.03, 0.01)
  adaspec_k: float = 0.4
  seed: int = 0

  @property
  def pad_len(self) -> int:
    return self.max_prompt_len + self.max_target_len + 2


def _tc(steps, lr, batch):
  """Adafactor (DistillSpec App. C.3), cosine schedule, clipping 1.0; periodic settings by ``train.with_steps``."""
  return with_steps(TrainConfig(batch_size=batch, learning_rate=lr, optimizer="adafactor", schedule="cosine",
                                clip_norm=1.0), steps)


PROFILES: dict[str, Profile] = {
    "smoke": Profile(
        name="smoke", tasks=("gsm8k",), fig4_tasks=("gsm8k",), adaspec_tasks=("gsm8k",),
        garden=("pico", "nano", "micro"), target_size="nano", draft_size="pico", vocab_size=320,
        max_prompt_len=24, max_target_len=16, n_train=128,
        sft_target=_tc(6, 0.2, 8), sft_draft=_tc(6, 0.2, 8), sft_garden=_tc(4, 0.2, 8), kd=_tc(4, 0.05, 8),
        kd_grid_steps=2,
        n_eval=8, eval_batch=8, max_new_tokens=8, gammas=(3,), n_latency_prompts=1, track_points=1,
        lenience_eps=(1.0, 0.3)),
    "quick": Profile(
        name="quick", tasks=("gsm8k",), fig4_tasks=("gsm8k",), adaspec_tasks=("gsm8k",),
        garden=("pico", "nano", "micro", "mini"), target_size="micro", draft_size="nano", vocab_size=1024,
        max_prompt_len=64, max_target_len=64, n_train=4000,
        sft_target=_tc(400, 0.1, 16), sft_draft=_tc(200, 0.2, 16), sft_garden=_tc(150, 0.1, 16),
        kd=_tc(60, 0.05, 16), kd_grid_steps=20, n_eval=32, eval_batch=32, max_new_tokens=48, track_points=2),
    "full": Profile(
        name="full", tasks=("gsm8k", "xsum", "cnn_dailymail", "wmt14_en_de", "lm1b"),
        fig4_tasks=("gsm8k", "xsum"), adaspec_tasks=("gsm8k", "xsum", "cnn_dailymail", "alpaca", "mbpp"),
        garden=("nano", "micro", "mini", "small", "base"), target_size="small", draft_size="nano", vocab_size=4096,
        max_prompt_len=256, max_target_len=128, n_train=0,
        sft_target=_tc(6000, 0.1, 64), sft_draft=_tc(4000, 0.1, 64), sft_garden=_tc(4000, 0.1, 64),
        kd=_tc(2000, 0.02, 64), kd_grid_steps=1000,
        n_eval=256, eval_batch=64, max_new_tokens=128, n_latency_prompts=16, track_points=5),
}


def get_profile(name: str, **overrides) -> Profile:
  """The named profile, with any fields replaced (e.g. ``tasks=("xsum",)``); unknown names raise ValueError."""
  if name not in PROFILES:
    raise ValueError(f"unknown profile {name!r}; known profiles: {', '.join(PROFILES)}")
  p = PROFILES[name]
  return dataclasses.replace(p, **{k: tuple(v) if isinstance(v, list) else v for k, v in overrides.items()})
