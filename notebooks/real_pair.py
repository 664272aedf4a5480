# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # DistillSpec on a real pretrained pair
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/dsrepro/dsrepro/blob/main/notebooks/real_pair.ipynb)
#
# Distils a **real pretrained draft** towards a **real pretrained target** (local HuggingFace checkpoints, e.g.
# Pythia-70M / Pythia-1.4B) with DistillSpec (on-policy GKD by default) or AdaSPEC, then measures speculative
# decoding with the raw and the distilled draft: acceptance rate, block efficiency tau, the measured cost ratio c
# and the speedup tau / (c gamma + 1), per gamma and decoding. Set `target_path` and `draft_path` below (nothing is
# downloaded). Memory and time: see the docstring of `dsrepro.repro.real_pair` (a 1.4B target wants a GPU). Writes
# `real_pair.csv` and `real_pair.png` into `out_dir`; runs are cached under `run_dir`.

# %% Colab only: clone + install, then work from notebooks/ as locally (task data in /content/data)
import os, sys  # noqa: E401
if "google.colab" in sys.modules:
  os.system("git clone -q https://github.com/dsrepro/dsrepro /content/dsrepro && pip install -q -e /content/dsrepro")
  sys.path.insert(0, "/content/dsrepro")
  os.chdir("/content/dsrepro/notebooks")
  os.environ.setdefault("DSREPRO_DATA", "/content/data")

# %% tags=["parameters"]
# target_path / draft_path: local HF checkpoint directories (config.json, weights, tokenizer)
# of GPT-2, GPT-NeoX (Pythia), Llama or Qwen2 models; both must use the same vocabulary
target_path = ""
draft_path = ""
task = "gsm8k"
# method: distillspec | adaspec; algorithm (DistillSpec only): supervised_kd | seqkd | imitkd | f_distill | gkd
method = "distillspec"
algorithm = "gkd"
steps = 200
batch_size = 8
# Adafactor's relative step size (0.01-0.05 for fine-tuning)
learning_rate = 0.02
n_train = 2000
n_eval = 64
max_prompt_len = 128
max_new_tokens = 64
# comma-separated
gammas = "3,5,7"
temperatures = "0,1"
# target_dtype: float32 | bfloat16 (the draft is always trained in float32)
target_dtype = "float32"
seed = 0
# run_dir: artefact cache root; empty = runs/real_pair (or $DSREPRO_RUNS/real_pair)
run_dir = ""
out_dir = "../figures"

# %%
import jax
from IPython.display import Image, display

from dsrepro.repro import real_pair

print("JAX", jax.__version__, "backend:", jax.default_backend(), "devices:", jax.devices())
real_pair.check_paths(target_path, draft_path)  # a clear error when the paths are not set

# %%
df = real_pair.distill_real_pair(
    target_path, draft_path, task, method=method, algorithm=algorithm, steps=steps,
    batch_size=batch_size, learning_rate=learning_rate, n_train=n_train, n_eval=n_eval,
    max_prompt_len=max_prompt_len, max_new_tokens=max_new_tokens, gammas=gammas,
    temperatures=temperatures, run_dir=run_dir or None, seed=seed, target_dtype=target_dtype)
df

# %%
csv_path, png_path = real_pair.save_results(df, out_dir)
print(csv_path)
display(Image(str(png_path)))
