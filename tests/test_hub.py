"""dsrepro.hub without network: snapshot_download and datasets.load_dataset are replaced by fakes that serve local
fixtures (a tiny random GPT-NeoX checkpoint written with transformers, rows shaped like each hub dataset), and
the offline / missing-package branches give errors naming what was searched."""
import fnmatch
import importlib.machinery
import shutil
import sys
import types

import numpy as np
import pytest
import torch
import transformers
from huggingface_hub.errors import LocalEntryNotFoundError

from dsrepro import data, hub
from dsrepro.models import hf

REPO_ID = "EleutherAI/pythia-tiny-test"


@pytest.fixture(autouse=True)
def allow_fetching(monkeypatch):
  """conftest.py sets DSREPRO_FETCH=0 for the suite; here every download function is a fake, so fetching is on."""
  monkeypatch.delenv("DSREPRO_FETCH", raising=False)


@pytest.fixture(scope="module")
def neox_dir(tmp_path_factory):
  """A tiny random GPTNeoXForCausalLM (Pythia's architecture) saved as a HF directory."""
  torch.manual_seed(0)
  cfg = transformers.GPTNeoXConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=256,
                                   rotary_pct=0.25, vocab_size=96, max_position_embeddings=64, hidden_dropout=0.0,
                                   attention_dropout=0.0, bos_token_id=None, eos_token_id=None, pad_token_id=None)
  model = transformers.AutoModelForCausalLM.from_config(cfg).eval()
  path = tmp_path_factory.mktemp("neox")
  model.save_pretrained(path)
  return path, model


class FakeHub:
  """snapshot_download over a local source folder, with a cache: local_files_only hits only what was fetched."""

  def __init__(self, src, cache):
    self.src, self.cache, self.calls = src, cache, []

  def __call__(self, repo_id, *, local_files_only=False, allow_patterns=None, revision=None, cache_dir=None):
    self.calls.append(dict(repo_id=repo_id, local_files_only=local_files_only, revision=revision))
    snap = self.cache / f"models--{repo_id.replace('/', '--')}" / "snapshots" / (revision or "main")
    if local_files_only:
      if not snap.is_dir():
        raise LocalEntryNotFoundError("Cannot find an appropriate cached snapshot folder (outgoing traffic disabled)")
      return str(snap)
    snap.mkdir(parents=True, exist_ok=True)
    for f in self.src.iterdir():
      if any(fnmatch.fnmatch(f.name, p) for p in allow_patterns):
        shutil.copy(f, snap / f.name)
    return str(snap)


def test_import_hf_by_hub_id_fetches_once_then_uses_the_cache(neox_dir, tmp_path, monkeypatch):
  src, ref = neox_dir
  fake = FakeHub(src, tmp_path / "cache")
  monkeypatch.setattr(hub, "snapshot_download", fake)
  model, tok = hf.import_hf(REPO_ID)
  assert [c["local_files_only"] for c in fake.calls] == [True, False] and tok is None
  ids = np.array([[5, 17, 42, 8, 63, 2]])
  with torch.no_grad():
    want = ref(torch.tensor(ids)).logits.numpy()
  np.testing.assert_allclose(np.asarray(model(ids)[0]), want, atol=1e-4)
  hf.import_hf(REPO_ID)  # second time: the cached snapshot, no network call
  assert [c["local_files_only"] for c in fake.calls] == [True, False, True]
  assert hub.resolve_checkpoint(src) == src  # a local directory is used as is, never looked up
  hf.import_hf(REPO_ID, revision="step1000")
  assert fake.calls[-1] == dict(repo_id=REPO_ID, local_files_only=False, revision="step1000")


def test_checkpoint_offline_error_names_what_was_searched(tmp_path, monkeypatch):
  def offline(repo_id, **kw):
    raise LocalEntryNotFoundError("Got: ConnectError: [Errno -2] Name or service not known")
  monkeypatch.setattr(hub, "snapshot_download", offline)
  with pytest.raises(FileNotFoundError, match=r"(?s)no checkpoint 'EleutherAI/pythia-1\.4b'.*HF cache.*"
                                              r"cache: LocalEntryNotFoundError.*hub: .*ConnectError"):
    hf.import_hf("EleutherAI/pythia-1.4b")
  calls = []
  monkeypatch.setattr(hub, "snapshot_download", lambda repo_id, **kw: calls.append(kw) or offline(repo_id))
  monkeypatch.setenv("HF_HUB_OFFLINE", "1")
  with pytest.raises(FileNotFoundError, match=r"offline mode \(HF_HUB_OFFLINE=1\)"):
    hub.fetch_checkpoint("EleutherAI/pythia-31m")
  assert [c["local_files_only"] for c in calls] == [True]  # offline: the cache only
  with pytest.raises(FileNotFoundError, match=r"config\.json"):  # an existing directory keeps today's error
    hf.import_hf(tmp_path)
  assert not hub.looks_like_repo_id(str(tmp_path)) and hub.looks_like_repo_id("EleutherAI/pythia-1.4b")


# ---------------------------------------------------------------- tasks

WORDS = "the cat sat on the mat and then it ran far away".split()


def _rows(dataset, config, split):
  """Rows shaped like the hub dataset's split (just enough of them for every split of our loaders)."""
  n = {"train": 520, "validation": 6, "test": 510, "prompt": 3}[split]
  text = lambda i: " ".join(WORDS[(i + j) % len(WORDS)] for j in range(8))
  if dataset == "openai/gsm8k":
    return [{"question": f"What is {i} + 1?", "answer": f"{i} + 1 = <<{i}+1={i + 1}>>{i + 1}\n#### {i + 1:,}"}
            for i in range(n)]
  if dataset == "EdinburghNLP/xsum":
    return [{"document": text(i), "summary": text(i + 1)[:20], "id": str(1000 + i)} for i in range(n)]
  if dataset == "abisee/cnn_dailymail":
    return [{"article": text(i), "highlights": "first.\nsecond.", "id": f"{i:040x}"} for i in range(n)]
  if dataset == "wmt/wmt14":
    return [{"translation": {"de": f"Hallo {i}", "en": f"Hello {i}"}} for i in range(n)]
  if dataset in ("lm1b", "Salesforce/wikitext"):
    return [{"text": ""} if i % 3 == 0 else {"text": f" = Title {i} = \n"} if i % 3 == 1 else {"text": text(i) + " \n"}
            for i in range(n)]
  if dataset == "tatsu-lab/alpaca":
    return [{"instruction": f"Do {i}.", "input": "" if i % 2 else "ctx", "output": f"done {i}", "text": "..."}
            for i in range(1000)]
  if dataset == "google-research-datasets/mbpp":
    return [{"task_id": i, "text": f"Write f{i}.", "code": f"def f{i}():\r\n  return {i}", "test_list": [
        f"assert f{i}() == {i}"], "test_setup_code": "", "challenge_test_list": []} for i in range(n)]
  raise AssertionError(f"unexpected dataset {dataset}")


def _datasets_module(load_dataset) -> types.ModuleType:
  """A stand-in for the `datasets` package (importable, with a module spec) offering only load_dataset."""
  mod = types.ModuleType("datasets")
  mod.__spec__ = importlib.machinery.ModuleSpec("datasets", None)
  mod.load_dataset = load_dataset
  return mod


@pytest.fixture
def fake_datasets(monkeypatch):
  calls = []

  def load_dataset(path, name=None, split=None):
    calls.append((path, name, split))
    return _rows(path, name, split)
  monkeypatch.setitem(sys.modules, "datasets", _datasets_module(load_dataset))
  monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
  monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
  monkeypatch.delenv("DSREPRO_FETCH", raising=False)
  return calls


@pytest.mark.parametrize("task", sorted(hub.HUB_TASKS))
def test_fetch_task_writes_what_the_loaders_read(task, tmp_path, fake_datasets):
  folder = hub.fetch_task(task, tmp_path)
  spec = data.TASKS[task]
  assert folder == tmp_path / spec.folder and data.find_task_dir(task, [tmp_path]) == folder.resolve()
  assert f"load_dataset({hub.HUB_TASKS[task].dataset!r}" in (folder / "SOURCE.md").read_text()
  assert {c[0] for c in fake_datasets} == {hub.HUB_TASKS[task].dataset}
  for split in data.SPLITS:
    rows = data.load_task(task, split, data_dir=tmp_path)
    assert rows, (task, split)
    assert all(ex.prompt and ex.target.startswith(" ") and ex.target.strip() for ex in rows)
  if task == "gsm8k":
    assert data.load_task(task, "test", data_dir=tmp_path)[2].target.endswith("The final answer is: 3")
  if task == "alpaca":  # one hub split cut in two: train.jsonl (500) + test.jsonl (the last 500)
    assert len(data.load_task(task, "test", data_dir=tmp_path)) == 500
  if task == "mbpp":
    assert "\r" not in data.load_task(task, "train", data_dir=tmp_path)[0].target


def test_fetch_task_without_datasets_or_offline(tmp_path, monkeypatch, fake_datasets):
  monkeypatch.setitem(sys.modules, "datasets", None)  # `import datasets` raises ImportError
  got = hub.try_fetch_task("gsm8k", tmp_path)
  assert got.path is None and "`datasets` package is not installed" in got.reason
  with pytest.raises(FileNotFoundError, match="pip install"):
    hub.fetch_task("gsm8k", tmp_path)

  def unreachable(path, name=None, split=None):
    raise ConnectionError("Couldn't reach 'openai/gsm8k' on the Hub (ConnectTimeout)")
  monkeypatch.setitem(sys.modules, "datasets", _datasets_module(unreachable))
  got = hub.try_fetch_task("gsm8k", tmp_path)
  assert got.path is None and "load_dataset('openai/gsm8k', 'main', split='train')" in got.reason
  assert "ConnectionError: Couldn't reach" in got.reason
  monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
  assert "offline mode (HF_DATASETS_OFFLINE=1)" in hub.try_fetch_task("gsm8k", tmp_path).reason
  monkeypatch.setenv("DSREPRO_FETCH", "0")
  assert "DSREPRO_FETCH=0" in hub.try_fetch_task("gsm8k", tmp_path).reason
  assert not (tmp_path / "gsm8k").exists()
  with pytest.raises(FileNotFoundError, match="no data for task 'gsm8k'"):
    data.find_task_dir("gsm8k", [tmp_path])
