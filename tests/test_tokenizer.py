"""Tests for dsrepro.tokenizer: a tiny byte-level BPE (vocab 300) trained on a few hundred synthetic texts."""
import numpy as np
import pytest
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from dsrepro import tokenizer as T
from dsrepro.data import Example

WORDS = "the cat sat on a mat and 42 dogs ran fast while 7 birds sang über café".split()
TEXTS = [" ".join(WORDS[(i * k) % len(WORDS)] for k in range(1, 12)) + f" {i}.\n" for i in range(400)]
STRINGS = ["hello world", "The final answer is: 1080", "line one\nline two\n\n  indented\ttab",
           "Ünïcödé: 日本語, emoji 🙂, Fußgänger", " leading space", "x = [1, 2, 3]  # 3.14e-5", ""]


@pytest.fixture(scope="module")
def tok():
  return T.train_tokenizer(TEXTS, vocab_size=300)


def test_special_ids_and_size(tok):
  assert (tok.pad_token_id, tok.bos_token_id, tok.eos_token_id) == (0, 1, 2)
  assert (tok.pad_token, tok.bos_token, tok.eos_token) == T.SPECIAL_TOKENS
  assert len(tok) == 300
  assert tok("the cat", add_special_tokens=True)["input_ids"] == tok("the cat", add_special_tokens=False)["input_ids"]


@pytest.mark.parametrize("s", STRINGS)
def test_round_trip(tok, s):
  ids = tok.encode(s, add_special_tokens=False)
  assert tok.decode(ids, clean_up_tokenization_spaces=False) == s
  assert T.decode_until_eos(tok, ids + [tok.eos_token_id] + ids) == s


def test_training_is_deterministic_and_learns_merges(tok):
  again = T.train_tokenizer(TEXTS, vocab_size=300)
  assert again.backend_tokenizer.to_str() == tok.backend_tokenizer.to_str()
  assert len(tok.encode(" the cat sat", add_special_tokens=False)) < len(" the cat sat".encode())


def test_bad_train_args():
  with pytest.raises(ValueError, match="vocab_size.*100"):
    T.train_tokenizer(TEXTS, vocab_size=100)
  with pytest.raises(ValueError, match="min_frequency"):
    T.train_tokenizer(TEXTS, vocab_size=300, min_frequency=0)


def test_save_load_round_trip(tok, tmp_path):
  path = T.save_tokenizer(tok, tmp_path / "tok")
  back = T.load_tokenizer(path)
  for s in STRINGS:
    assert back.encode(s, add_special_tokens=False) == tok.encode(s, add_special_tokens=False)
  assert (back.pad_token_id, back.bos_token_id, back.eos_token_id) == (0, 1, 2)
  T.check_same_vocab(tok, back)
  with pytest.raises(FileNotFoundError, match="nope"):
    T.load_tokenizer(tmp_path / "nope")


def test_load_hf_dir_without_pad_uses_eos(tmp_path):
  raw = Tokenizer(models.BPE(vocab={"a": 0, "b": 1, "<|endoftext|>": 2}, merges=[]))
  raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
  raw.decoder = decoders.ByteLevel()
  PreTrainedTokenizerFast(tokenizer_object=raw, eos_token="<|endoftext|>").save_pretrained(str(tmp_path))
  hf = T.load_tokenizer(tmp_path)
  assert hf.pad_token_id == hf.eos_token_id == hf.bos_token_id == 2


def test_check_same_vocab(tok):
  T.check_same_vocab(tok, T.train_tokenizer(TEXTS, vocab_size=300))
  small = T.train_tokenizer(TEXTS, vocab_size=290)
  with pytest.raises(ValueError, match=r"target has 300 tokens, draft has 290"):
    T.check_same_vocab(tok, small)
  other = T.train_tokenizer([t.upper() for t in TEXTS], vocab_size=300)
  with pytest.raises(ValueError, match=r"both 300 tokens.*big maps '.*' to \d+, small maps it"):
    T.check_same_vocab(tok, other, names=("big", "small"))


def _ids(tok, s):
  return tok.encode(s, add_special_tokens=False)


def test_encode_examples_masks_exactly_the_target(tok):
  exs = [Example("the cat sat", " on a mat", "0"), Example("dogs", " ran fast while 7 birds sang", "1"),
         Example("über café 42", " x", "2")]
  enc = T.encode_examples(tok, exs, max_prompt_len=64, max_target_len=64)
  N, L = enc.tokens_NxL.shape
  assert N == 3 and L % 8 == 0 and L >= int(enc.length_N.max())
  assert enc.tokens_NxL.dtype == np.int32 and enc.loss_mask_NxL.dtype == np.float32
  assert enc.prompt_len_N.dtype == np.int32 and enc.length_N.dtype == np.int32
  for i, e in enumerate(exs):
    row, mask, p, n = enc.tokens_NxL[i], enc.loss_mask_NxL[i], enc.prompt_len_N[i], enc.length_N[i]
    assert row[0] == tok.bos_token_id and list(row[1:p]) == _ids(tok, e.prompt)
    assert list(row[mask == 1]) == _ids(tok, e.target) + [tok.eos_token_id]
    assert np.all(mask[:p] == 0) and np.all(mask[p:n] == 1) and np.all(mask[n:] == 0)
    assert np.all(row[n:] == tok.pad_token_id) and row[n - 1] == tok.eos_token_id
    assert T.decode_until_eos(tok, row[p:]) == e.target
    assert T.decode_until_eos(tok, row) == e.prompt + e.target  # bos skipped
  assert T.encode_examples(tok, exs, 64, 64, pad_to=50).tokens_NxL.shape == (3, 50)
  assert T.encode_examples(tok, exs, 64, 64, pad_multiple=1).tokens_NxL.shape[1] == int(enc.length_N.max())


def test_encode_examples_truncation(tok):
  prompt, target = " ".join(WORDS * 3), " " + " ".join(WORDS * 2)
  pids, tids = _ids(tok, prompt), _ids(tok, target)
  enc = T.encode_examples(tok, [Example(prompt, target, "x")], max_prompt_len=10, max_target_len=7)
  row = enc.tokens_NxL[0]
  assert enc.prompt_len_N[0] == 10 and enc.length_N[0] == 17
  tail = min(T.PROMPT_TAIL, 9 // 2)  # cut in the middle: the head and the last `tail` tokens (the answer marker)
  assert row[0] == tok.bos_token_id and list(row[1:10]) == pids[:9 - tail] + pids[-tail:]
  long = T.encode_prompts(tok, [prompt], max_prompt_len=40)[0][0]
  assert len(pids) > 39 and list(long[1:40]) == pids[:39 - T.PROMPT_TAIL] + pids[-T.PROMPT_TAIL:]
  assert list(row[10:17]) == tids[:7] and tok.eos_token_id not in row[10:17]  # cut target: no eos
  exact = T.encode_examples(tok, [Example(prompt, target, "x")], 10, len(tids) + 1)
  assert exact.tokens_NxL[0, exact.length_N[0] - 1] == tok.eos_token_id


def test_encode_prompts_matches_examples(tok):
  prompts = ["the cat sat on a mat", "dogs", " ".join(WORDS * 3)]
  toks, plen = T.encode_prompts(tok, prompts, max_prompt_len=12)
  enc = T.encode_examples(tok, [Example(p, " x", str(i)) for i, p in enumerate(prompts)], 12, 4)
  assert toks.dtype == np.int32 and toks.shape[1] % 8 == 0 and np.array_equal(plen, enc.prompt_len_N)
  for i, p in enumerate(plen):
    assert np.array_equal(toks[i, :p], enc.tokens_NxL[i, :p]) and np.all(toks[i, p:] == tok.pad_token_id)
  assert plen[2] == 12 and T.encode_prompts(tok, prompts, 12, pad_to=13)[0].shape == (3, 13)


def test_bad_encode_args(tok):
  ex = [Example("a", " b", "0")]
  with pytest.raises(ValueError, match="max_prompt_len"):
    T.encode_examples(tok, ex, 0, 4)
  with pytest.raises(ValueError, match="max_target_len"):
    T.encode_examples(tok, ex, 4, 0)
  with pytest.raises(ValueError, match="pad_to=2"):
    T.encode_examples(tok, ex, 8, 8, pad_to=2)
  with pytest.raises(ValueError, match="no examples"):
    T.encode_examples(tok, [], 8, 8)
  with pytest.raises(ValueError, match="non-empty sequence"):
    T.encode_prompts(tok, "a single string", 8)


def test_decode_until_eos_stops_at_pad_and_eos(tok):
  a, b = _ids(tok, "the cat"), _ids(tok, " sat")
  assert T.decode_until_eos(tok, np.array(a + [tok.pad_token_id] + b, np.int32)) == "the cat"
  assert T.decode_until_eos(tok, [tok.bos_token_id] + a + b) == "the cat sat"
  assert T.decode_until_eos(tok, [tok.eos_token_id] + a) == ""
