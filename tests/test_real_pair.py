"""real_pair: distil a tiny random HF Llama draft against a tiny random HF Llama target through the notebook.

The checkpoints are built locally with transformers + torch (no downloads) and share one byte-level BPE tokenizer
trained on GSM8K text; the HF vocab_size equals len(tokenizer).
"""
from pathlib import Path

import pandas as pd
import papermill as pm
import pytest
import torch
import transformers

from dsrepro import data

from dsrepro.repro import notebooks, real_pair
from dsrepro.tokenizer import train_tokenizer


@pytest.fixture(scope="module")
def tok():
  return train_tokenizer(data.task_texts("gsm8k", "train", limit=200), vocab_size=300)


def _llama(path: Path, tok, hidden: int, layers: int, seed: int, vocab_size: int | None = None) -> str:
  torch.manual_seed(seed)
  cfg = transformers.LlamaConfig(vocab_size=vocab_size or len(tok), hidden_size=hidden, intermediate_size=2 * hidden,
                                 num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
                                 max_position_embeddings=64, tie_word_embeddings=False,
                                 bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                                 pad_token_id=tok.pad_token_id)
  transformers.AutoModelForCausalLM.from_config(cfg).save_pretrained(str(path))
  tok.save_pretrained(str(path))
  return str(path)


def test_real_pair_notebook(tok, tmp_path):
  target = _llama(tmp_path / "target", tok, hidden=64, layers=2, seed=0)
  draft = _llama(tmp_path / "draft", tok, hidden=32, layers=1, seed=1)
  out = tmp_path / "figures"
  assert "real_pair" not in notebooks.names()  # run_all never runs it
  pm.execute_notebook(str(notebooks.NOTEBOOK_DIR / "real_pair.ipynb"), str(tmp_path / "executed.ipynb"),
                      parameters=dict(target_path=target, draft_path=draft, task="gsm8k", steps=3, batch_size=4,
                                      n_train=32, n_eval=4, max_prompt_len=24, max_new_tokens=8, gammas="3",
                                      temperatures="0,1", run_dir=str(tmp_path / "runs"), out_dir=str(out)),
                      kernel_name=notebooks.KERNEL, cwd=str(notebooks.NOTEBOOK_DIR), progress_bar=False)
  assert (out / "real_pair.png").stat().st_size > 0
  df = pd.read_csv(out / "real_pair.csv")
  assert set(df["draft"]) == {"raw", "distilled"} and set(df["decoding"]) == {"greedy", "T=1"}
  assert len(df) == 4 and (df["gamma"] == 3).all()
  assert df["tau"].between(1, 4).all() and df["alpha_hat"].between(0, 1).all() and (df["c"] > 0).all()
  runs = list((tmp_path / "runs").glob("realpair-distillspec-*/DONE"))
  assert len(runs) == 1


def test_vocab_mismatch_names_both_sizes(tok, tmp_path):
  target = _llama(tmp_path / "target", tok, hidden=32, layers=1, seed=0)
  draft = _llama(tmp_path / "draft", tok, hidden=32, layers=1, seed=1, vocab_size=len(tok) + 16)
  with pytest.raises(ValueError, match=rf"vocab_size={len(tok)}.*vocab_size={len(tok) + 16}"):
    real_pair.distill_real_pair(target, draft, steps=1, run_dir=str(tmp_path / "runs"))
  with pytest.raises(ValueError, match="target_path is empty"):
    real_pair.distill_real_pair("", draft)
