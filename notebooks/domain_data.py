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
# # Domain drafts: which data, and how much
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/dsrepro/dsrepro/blob/main/notebooks/domain_data.ipynb)
#
# **What the paper asks.** arXiv 2503.07807: without logs of user queries, what should a domain draft be distilled
# on, and does more data help in every domain?
#
# **Data scenarios** (N training prompts each; terms as in the `domain_drafts` notebook):
# - *historical queries*: the task's training prompts, answered by the domain target (T = 1);
# - *curated domain data*: the task's ground-truth prompt + answer texts (the target does not make the text;
#   white-box still uses its distributions on that text);
# - *synthetic*: prompts the target writes itself after a short domain prefix (Magpie-style: "Question:" for
#   GSM8K, "Write a python function" for MBPP), cut at the task's answer marker, then answered by the target.
#
# **The paper's claims.** D4: synthetic data reaches 80-93% of the acceptance that historical queries give (we
# report the fraction with its interval). D5: acceptance rises with the amount of data in every domain.
#
# **Equal budgets.** Every arm trains from the generic draft for the same U updates of B rows. The scaling runs
# train on the first n examples of the historical set at every size with the SAME updates: equal compute, more
# data.
#
# **How to read the figure.** (c) alpha per domain for every scenario x box, annotated with the fraction of the
# historical-queries alpha. (d) alpha vs the number of training examples (log axis), white- and black-box, the
# generic draft dashed; 95% intervals over seeds x prompts.

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
tables = notebooks.show_figure("domain_data", p, root, out_dir)
tables["domain_scenarios"]

# %% [markdown]
# The fractions of the historical-queries alpha (paper: synthetic 80-93%), then alpha per training-set size.

# %%
get("domain_data").key_numbers(tables)
