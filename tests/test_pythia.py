"""The `pythia` profile (AdaSPEC's Pythia-31M -> 1.4B setting) end to end at smoke scale, through the notebooks: tiny
random GPT-NeoX checkpoints named like the Pythia family are written locally and found through
$DSREPRO_CHECKPOINTS (the hub path is tested with fakes in test_hub.py); the report must put AdaSPEC's published
numbers beside ours."""
from pathlib import Path

import pandas as pd
import pytest
import torch
import transformers

from dsrepro import data
from dsrepro.repro import artefacts, notebooks
from dsrepro.repro.profiles import PROFILES, get_profile
from dsrepro.tokenizer import train_tokenizer

SIZES = {"pythia-14m": (32, 1), "pythia-31m": (48, 1), "pythia-70m": (64, 2)}  # hidden size, layers


def _neox(path: Path, tok, hidden: int, layers: int, seed: int) -> None:
  torch.manual_seed(seed)
  cfg = transformers.GPTNeoXConfig(
      vocab_size=len(tok), hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=4,
      intermediate_size=4 * hidden, rotary_pct=0.25, use_parallel_residual=True, max_position_embeddings=128,
      hidden_dropout=0.0, initializer_range=0.2, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
  transformers.AutoModelForCausalLM.from_config(cfg).save_pretrained(str(path))
  tok.save_pretrained(str(path))


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
  root = tmp_path_factory.mktemp("checkpoints")
  tok = train_tokenizer(data.task_texts("gsm8k", "train", limit=300), vocab_size=300)
  for i, (size, (hidden, layers)) in enumerate(SIZES.items()):
    _neox(root / size, tok, hidden, layers, seed=i)
  return root


def test_pythia_profile_is_adaspecs_setting():
  p = PROFILES["pythia"]
  assert p.target_size == "pythia-1.4b" and p.draft_size == "pythia-31m" and p.epochs == 3
  assert set(p.adaspec_tasks) == {"gsm8k", "alpaca", "mbpp", "cnn_dailymail", "xsum"} and p.adaspec_k == 0.4
  assert p.max_prompt_len + p.max_target_len == 512 and dict(p.hf_models)["pythia-1.4b"] == "EleutherAI/pythia-1.4b"
  assert p.garden[0] == "pythia-14m" and p.garden[-1] == "pythia-1.4b" and p.pretrain is None
  assert get_profile("pythia").task_train(p.kd, 1000).steps == 188  # 3 epochs of 1000 examples, batch 16


def test_checkpoints_dir_is_used_or_rejected(checkpoints, monkeypatch):
  p = get_profile("pythia-smoke")
  monkeypatch.setenv("DSREPRO_CHECKPOINTS", str(checkpoints))
  assert artefacts.checkpoint_dir(p, "pythia-31m") == checkpoints / "pythia-31m"
  monkeypatch.setenv("DSREPRO_CHECKPOINTS", str(checkpoints / "nowhere"))
  with pytest.raises(FileNotFoundError, match="no checkpoint 'pythia-31m' under DSREPRO_CHECKPOINTS"):
    artefacts.checkpoint_dir(p, "pythia-31m")


def test_pythia_smoke_through_the_notebooks(checkpoints, tmp_path, monkeypatch):
  monkeypatch.setenv("DSREPRO_CHECKPOINTS", str(checkpoints))
  out = tmp_path / "figures"
  notebooks.run_all("pythia-smoke", out, run_dir=tmp_path / "runs", progress=False,
                    only=("table_d1", "table_adaspec", "report"))  # the Pythia path: HF import, epochs, AdamW
  ada = pd.read_csv(out / "adaspec_table.csv")
  assert set(ada.model) >= {"AdaSPEC", "DistillSpec (FKL, fixed data)"} and ada.alpha_hat.between(0, 1).all()
  report = (out / "REPORT.md").read_text()
  assert "profile: `pythia-smoke`" in report and "paper 31M->1.4B, 3 ep." in report and "57.58 -> 61.02" in report
  d1 = pd.read_csv(out / "table_d1.csv")
  assert set(d1.model) == {"SFT", "DistillSpec"} and (d1.c > 0).all()
