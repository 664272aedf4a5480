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
# # Fig. 3: draft / target alignment
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/dsrepro/dsrepro/blob/main/notebooks/fig3_alignment.ipynb)
#
# **What the paper shows.** DistillSpec (arXiv 2310.08461) Fig. 3: (a) how the acceptance rate alpha of a draft
# rises during distillation, (b) the per-example block efficiency of the distilled vs the SFT draft, (c) the
# theoretical block efficiency tau(alpha, gamma) = (1 - alpha^(gamma+1)) / (1 - alpha), computed from the
# teacher-forced acceptance rate, against the tau measured in real SD runs.
#
# **The paper's claims.** The distilled draft improves tau for most examples (most points of (b) above y = x), and
# theory and measurement agree in ranking the drafts ((c) close to y = x).
#
# **How to read the panels.** (a) colour = KD algorithm, line style = decoding, step 0 = the SFT draft every run
# starts from; (b) one point per evaluation prompt; (c) one point per draft x decoding x gamma.

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
# tasks: comma-separated override such as gsm8k,xsum; empty = the profile's tasks
tasks = ""
seed = 0
# run_dir: artefact cache root; empty = the default runs/ (or DSREPRO_RUNS)
run_dir = ""
# out_dir: figures, CSVs and REPORT.md; empty = figures/<profile>/
out_dir = ""

# %%
from dsrepro.repro import notebooks

p, root, out_dir = notebooks.setup(profile, tasks, seed, run_dir, out_dir)
p

# %% [markdown]
# Build the figure: every model it needs is trained once and cached under `runs/<profile>/`; the CSVs
# and the plot go to `out_dir`.

# %%
tables = notebooks.show_figure("fig3", p, root, out_dir)
tables
