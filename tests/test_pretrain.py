"""pretrain: the corpus holds only training splits, packing keeps every document in order, the record names the
files read."""
import numpy as np
import pytest

from dsrepro import data, pretrain


def test_corpus_is_training_text_only():
  texts = pretrain.corpus(("mbpp", "lm1b"))
  assert [s for s, _ in texts[:1]] == ["mbpp"] and {s for s, _ in texts} == {"mbpp", "lm1b"}
  train = {ex.prompt + ex.target for ex in data.load_task("mbpp", "train")}
  heldout = {ex.prompt + ex.target for split in ("validation", "test") for ex in data.load_task("mbpp", split)}
  mbpp = {t for s, t in texts if s == "mbpp"}
  assert mbpp == train and not mbpp & heldout
  lm_val = {ex.prompt + ex.target for ex in data.load_task("lm1b", "validation")}
  assert not {t for s, t in texts if s == "lm1b"} & lm_val
  with pytest.raises(ValueError, match="empty pretraining corpus"):
    pretrain.corpus(())


def test_pack_keeps_documents_in_order():
  rows = pretrain.pack([[5, 6], [7], [8, 9, 10]], seq_len=5, bos_id=1, eos_id=2)
  np.testing.assert_array_equal(rows, [[1, 5, 6, 2, 1], [7, 2, 1, 8, 9]])  # the tail "10 2" does not fill a row
  assert rows.dtype == np.int32
  with pytest.raises(ValueError, match="does not fill one row"):
    pretrain.pack([[5]], seq_len=8, bos_id=1, eos_id=2)


def test_record_names_files_with_checksums():
  texts = pretrain.corpus(("mbpp",))
  rec = pretrain.corpus_record(texts, n_tokens=123)
  s = rec["sources"]["mbpp"]
  assert s["texts"] == len(texts) and set(s["files"]) == set(data.TASKS["mbpp"].files)
  assert rec["n_tokens"] == 123 and len(rec["sha256"]) == 64
  assert data.manifest()["mbpp"]["train.jsonl"]["sha256"] == s["files"]["train.jsonl"]
