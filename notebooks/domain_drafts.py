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
# # Domain drafts: generic vs distilled, offline vs online, white-box vs black-box
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/dsrepro/dsrepro/blob/main/notebooks/domain_drafts.ipynb)
#
# **What the paper asks.** arXiv 2503.07807 ("Training Domain Draft Models for Speculative Decoding") takes the
# practitioner's setting: a target fine-tuned on a domain, a generic draft, and acceptance that drops under the
# domain shift. How should one distill a domain draft?
#
# **Terms** (other tools use "online" / "offline" differently):
# - *Generic draft*: the pretrained base of the draft size, never fine-tuned on the domain. *Domain target*: the
#   target fine-tuned on the domain (the SFT target of the DistillSpec figures). Every domain draft starts from the
#   generic draft.
# - *White-box*: the loss uses the target's token distributions (FKL over the vocabulary). *Black-box*: only the
#   target's generated text (cross-entropy on its sampled tokens); the training step never sees the target.
# - *Offline*: the training set (prompts, the target's responses, for white-box its distributions) is built before
#   training, then the draft trains for U updates. *Online*: the draft serves the same N queries with speculative
#   decoding, in chunks of B, and is updated as it goes from what serving produced; white-box uses the target's
#   distributions from the verification pass on the served tokens (as Online Speculative Decoding does).
#
# **The paper's claims.** D1: the generic draft accepts less on the domain than a domain draft. D2: offline
# distillation beats online distillation by 11-25% (acceptance). D3: white-box beats black-box by 2-10%.
#
# **Equal budgets.** Every arm: N examples (queries), U updates of B rows, the same optimizer and schedule; the
# table below the figure lists the examples, updates and target tokens each arm trained on.
#
# **How to read the figure.** (a) alpha and tau of every draft per domain, greedy and T = 1, at gamma 5, with 95%
# intervals over seeds x prompts (real SD with the domain target on held-out prompts). (b) The 2 x 2 of mode x box
# per domain. (e) The online arms' acceptance on the live stream, chunk by chunk (the draft of that moment serving,
# T = 1); the lines are the generic and offline white-box drafts on the held-out prompts.

# %% Colab only: clone + install, then work from notebooks/ as locally (task data in /content/data)
import os, sys  # noqa: E401
if "google.colab" in sys.modules:
  os.system("git clone -q https://github.com/dsrepro/dsrepro /content/dsrepro && pip install -q -e /content/dsrepro")
  sys.path.insert(0, "/content/dsrepro")
  os.chdir("/content/dsrepro/notebooks")
  os.environ.setdefault("DSREPRO_DATA", "/content/data")

# %% tags=["parameters"]
# profile: smoke | quick | cpu | full | pythia (see dsrepro/repro/profiles.py; full and pythia want a GPU / TPU)
profile = "quick"
# tasks: comma-separated override of the profile's DOMAINS (domain_tasks) such as gsm8k,mbpp; empty = the profile's
tasks = ""
seed = 0
# run_dir: artefact cache root; empty = the default runs/ (or DSREPRO_RUNS)
run_dir = ""
# out_dir: figures, CSVs and REPORT.md; empty = figures/<profile>/
out_dir = ""

# %%
from dsrepro.repro import domain, notebooks
from dsrepro.repro.figures import get

p, root, out_dir = notebooks.setup(profile, "", seed, run_dir, out_dir)
p = domain.with_tasks(p, tasks)
domain.settings(p)

# %% [markdown]
# Build the figure: every dataset and draft is built once and cached under `runs/<profile>/`; the CSVs and the
# plot go to `out_dir`.

# %%
tables = notebooks.show_figure("domain", p, root, out_dir)
tables["domain_acceptance"]

# %% [markdown]
# Alpha per draft, then what each arm used (examples, updates of B rows, target tokens trained on).

# %%
get("domain").key_numbers(tables)
