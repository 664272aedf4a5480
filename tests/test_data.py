"""Tests for dsrepro.data on the real files under shared/data (found through the default search paths)."""
import functools
import json
import re
from pathlib import Path

import pytest

from dsrepro import data
from dsrepro.errors import DataNotFound

SIZES = {  # exact sizes of every split (the carving is deterministic)
    "gsm8k": (6973, 500, 1319), "xsum": (997, 100, 1000), "cnn_dailymail": (500, 100, 400),
    "wmt14_en_de": (8495, 3000, 3003), "lm1b": (12064, 5967, 5967), "alpaca": (4299, 200, 499),
    "mbpp": (374, 90, 500), "wikitext2": (1764, 1003, 1004),
}
REPO = Path(data.__file__).resolve().parent.parent


@functools.cache
def _load(task, split):
  return tuple(data.load_task(task, split))


def test_tasks_table():
  assert sorted(data.TASKS) == sorted(SIZES)
  paper = {"xsum": (1024, 64), "cnn_dailymail": (2048, 128), "wmt14_en_de": (80, 80), "gsm8k": (256, 320),
           "lm1b": (128, 128)}
  for name, lens in paper.items():
    assert (data.TASKS[name].max_input_len, data.TASKS[name].max_output_len) == lens
  assert data.TASKS["gsm8k"].metric == "accuracy" and data.TASKS["xsum"].metric == "rouge2"
  assert data.TASKS["wmt14_en_de"].metric == "bleu" and data.TASKS["alpaca"].metric == "rougeL"
  for spec in data.TASKS.values():
    assert spec.name in data._LOADERS and spec.metric in data.METRICS and spec.files
  with pytest.raises(Exception):
    data.TASKS["gsm8k"].max_input_len = 1  # frozen


@pytest.mark.parametrize("task", sorted(SIZES))
def test_loader_sizes_and_fields(task):
  for split, n in zip(data.SPLITS, SIZES[task]):
    rows = _load(task, split)
    assert len(rows) == n, (task, split)
    assert len({e.id for e in rows}) == n
    for e in rows:
      assert isinstance(e, data.Example)
      assert e.prompt.strip() and e.target.strip(), e.id
      assert e.target.startswith(" ") and "\r" not in e.prompt + e.target


@pytest.mark.parametrize("task", sorted(SIZES))
def test_splits_disjoint(task):
  ids = [{e.id for e in _load(task, s)} for s in data.SPLITS]
  prompts = [{e.prompt for e in _load(task, s)} for s in data.SPLITS]
  for a, b in [(0, 1), (0, 2), (1, 2)]:
    assert not ids[a] & ids[b]
  if task in ("cnn_dailymail", "gsm8k", "xsum", "mbpp"):  # texts are unique there, so prompts must be disjoint too
    assert not prompts[0] & prompts[2] and not prompts[0] & prompts[1]


def test_gsm8k_format():
  for split in data.SPLITS:
    for e in _load("gsm8k", split):
      assert re.search(r"\nThe final answer is: -?[\d.]+$", e.target), e.target[-60:]
      assert "<<" not in e.target and "####" not in e.target and "," not in e.target.split("\n")[-1]
      assert e.prompt.startswith("Question: ") and e.prompt.endswith(
          "\nAnswer the question step by step and end with 'The final answer is: N'.\nAnswer:")
  first = _load("gsm8k", "train")[0]
  assert first.target == (" Natalia sold 48/2 = 24 clips in May.\nNatalia sold 48+24 = 72 clips altogether in April "
                          "and May.\nThe final answer is: 72")
  assert [e.id for e in _load("gsm8k", "validation")][:1] == ["train-6973"]
  assert any(e.target.endswith("The final answer is: 1080") for e in _load("gsm8k", "train"))  # "#### 1,080"


def test_prompt_formats():
  wmt = _load("wmt14_en_de", "test")[0]
  assert wmt.prompt == "Translate English to German.\nEnglish: Gutach: Increased safety for pedestrians\nGerman:"
  assert wmt.target == " Gutach: Noch mehr Sicherheit für Fußgänger" and wmt.id == "newstest2014-0"
  cnn = _load("cnn_dailymail", "validation")[0]
  assert cnn.id == "0" and cnn.prompt.startswith("Summarize the following article.\n(CNN)The Palestinian Authority")
  assert cnn.prompt.endswith("\nSummary:") and "\n" not in cnn.target
  assert {int(e.id) for e in _load("cnn_dailymail", "train")} == set(range(500, 1000))
  assert {int(e.id) for e in _load("cnn_dailymail", "test")} == set(range(100, 500))
  xs = _load("xsum", "test")[0]
  assert xs.prompt.startswith("Summarize the following article.\nThe owners said") and xs.prompt.endswith("Summary:")
  mb = _load("mbpp", "test")[0]
  assert mb.id == "11" and mb.prompt.startswith("Write a python function to remove first and last occurrence")
  assert "\nYour code should pass these tests:\nassert remove_Occ(" in mb.prompt and mb.prompt.endswith("\nCode:")
  assert mb.target.startswith(" def remove_Occ(s,ch): \n")
  al = _load("alpaca", "train")
  assert al[0].prompt.endswith("### Input:\nSentence 1: I am going to the store.\nSentence 2: I goes to the store."
                               "\n\n### Response:") and al[0].target == " No"
  no_input = [e for e in al if "### Input:" not in e.prompt]
  assert 0.5 < len(no_input) / len(al) < 0.7  # ~61% have no input
  assert all(e.prompt.startswith("Below is an instruction that describes a task") for e in al)


@pytest.mark.parametrize("task,train_file", [("lm1b", "dev.txt"), ("wikitext2", "valid.txt")])
def test_lm_prefix_split(task, train_file):
  d = data.find_task_dir(task)
  lines = (d / train_file).read_text(encoding="utf-8").split("\n")
  for e in _load(task, "train")[:300]:
    words = lines[int(e.id.split("-")[1])].split()
    p, t = e.prompt.split(), e.target.split()
    assert p + t == words and len(p) == max(3, len(words) // 3) and len(t) >= 3
  texts = [e.prompt + e.target for s in data.SPLITS for e in _load(task, s)]
  assert not any(t.startswith("=") and t.endswith("=") for t in texts)  # WikiText headings dropped
  val, test = _load(task, "validation"), _load(task, "test")
  assert int(val[-1].id.split("-")[1]) < int(test[0].id.split("-")[1])  # first half / second half of test.txt


def test_limit_and_texts():
  assert [e.id for e in data.load_task("xsum", "train", limit=5)] == [e.id for e in _load("xsum", "train")[:5]]
  assert data.load_task("mbpp", "test", limit=0) == []
  texts = list(data.task_texts("wmt14_en_de", limit=3))
  assert texts == [e.prompt + e.target for e in _load("wmt14_en_de", "train")[:3]]
  with pytest.raises(ValueError, match="limit"):
    data.load_task("mbpp", "test", limit=-1)


def test_unknown_task_and_split():
  with pytest.raises(ValueError, match=r"unknown task 'squad'.*gsm8k"):
    data.load_task("squad", "train")
  with pytest.raises(ValueError, match=r"unknown task 'squad'"):
    data.find_task_dir("squad")
  with pytest.raises(ValueError, match=r"unknown split 'dev'.*validation"):
    data.load_task("gsm8k", "dev")


def test_missing_data_lists_searched_paths(tmp_path, monkeypatch):
  a, b = tmp_path / "a", tmp_path / "b"
  a.mkdir()
  (a / "gsm8k").mkdir()
  (a / "gsm8k" / "train.jsonl").write_text("")  # test.jsonl missing: this folder must be skipped
  with pytest.raises(FileNotFoundError) as err:
    data.find_task_dir("gsm8k", [a, b])
  msg = str(err.value)
  assert "'gsm8k'" in msg and str(a / "gsm8k") in msg and str(b / "gsm8k") in msg
  assert "train.jsonl" in msg and "test.jsonl" in msg
  with pytest.raises(FileNotFoundError, match="wikitext2"):
    data.find_task_dir("wikitext2", [])
  # the default search tries the hub last and says why nothing was fetched (here: DSREPRO_FETCH=0, conftest.py)
  monkeypatch.setenv("DSREPRO_DATA", str(b))
  with pytest.raises(FileNotFoundError, match="DSREPRO_FETCH=0"):
    data.find_task_dir("gsm8k")


def test_search_path_order_and_repo_fallback(tmp_path, monkeypatch):
  empty = tmp_path / "empty"
  empty.mkdir()
  cwd = tmp_path / "nb"
  cwd.mkdir()
  monkeypatch.chdir(cwd)
  monkeypatch.delenv("DSREPRO_DATA", raising=False)
  paths = data.data_search_paths()
  want = [cwd / "data", tmp_path / "shared" / "data", REPO / "data", (REPO.parent / "shared" / "data")]
  assert paths == [p.resolve() for p in want]
  assert data.find_task_dir("mbpp") == (REPO.parent / "shared" / "data" / "mbpp").resolve()


def test_explicit_data_root_is_used_or_rejected_never_replaced(tmp_path, monkeypatch):
  """$DSREPRO_DATA is the only root when set: a root without the task is an error naming it, even though the
  task exists further down the default search path."""
  empty = tmp_path / "empty"
  empty.mkdir()
  monkeypatch.setenv("DSREPRO_DATA", str(empty))
  assert data.data_search_paths() == [empty.resolve()]
  with pytest.raises(FileNotFoundError, match=r"DSREPRO_DATA=.*empty.*mbpp.*unset DSREPRO_DATA") as err:
    data.load_task("mbpp", "train")
  assert isinstance(err.value, DataNotFound) and "\n" not in str(err.value)
  monkeypatch.setenv("DSREPRO_DATA", str(tmp_path / "nope"))
  with pytest.raises(DataNotFound, match=r"nope/mbpp \(no such directory\)"):
    data.find_task_dir("mbpp")


def test_env_root_wins_and_data_dir_forms(tmp_path, monkeypatch):
  xs = tmp_path / "root" / "xsum"
  xs.mkdir(parents=True)
  for i, split in enumerate(data.SPLITS):
    (xs / f"{split}.jsonl").write_text(json.dumps({"id": i, "document": f"doc {split}", "summary": "sum"}) + "\n")
  monkeypatch.setenv("DSREPRO_DATA", str(tmp_path / "root"))
  assert data.load_task("xsum", "test") == [data.Example("Summarize the following article.\ndoc test\nSummary:",
                                                         " sum", "2")]
  monkeypatch.delenv("DSREPRO_DATA")
  assert data.load_task("xsum", "validation", data_dir=xs)[0].id == "1"  # the task folder itself
  assert data.load_task("xsum", "train", data_dir=tmp_path / "root")[0].id == "0"  # a data root


def test_staged_files_match_the_manifest_and_a_damaged_copy_is_reported(tmp_path):
  assert set(data.manifest()) >= {"gsm8k", "xsum", "mbpp"}
  assert data.check_task_files("mbpp") == []
  src = data.find_task_dir("mbpp")
  for f in src.iterdir():
    (tmp_path / f.name).write_bytes(f.read_bytes())
  (tmp_path / "train.jsonl").write_bytes((src / "train.jsonl").read_bytes()[:1000])  # truncated
  diffs = data.check_task_files("mbpp", tmp_path)
  assert len(diffs) == 1 and "train.jsonl" in diffs[0] and "sha256 differs" in diffs[0]
