"""HF import / export parity on tiny random checkpoints built locally with transformers + torch (no downloads)."""
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers
from flax import nnx
from safetensors.torch import load_file, save_file
from tokenizers import Tokenizer, models as tok_models, pre_tokenizers

from dsrepro.models import hf
from dsrepro.models.hf_config import export_arch, hf_config_to_model_config
from dsrepro.models.transformer import garden_config, init_cache, make_model

V = 96
PROMPT = [[5, 17, 42, 8, 63, 2]]
STEPS = 10
COMMON = dict(vocab_size=V, initializer_range=0.2, bos_token_id=None, eos_token_id=None, pad_token_id=None)
HF_CONFIGS = {
    "gpt2": lambda: transformers.GPT2Config(n_embd=48, n_layer=2, n_head=4, n_positions=64, **COMMON),
    "gpt_neox": lambda: transformers.GPTNeoXConfig(
        hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=96, rotary_pct=0.25,
        use_parallel_residual=True, max_position_embeddings=64, hidden_dropout=0.0, **COMMON),
    "llama_tied": lambda: transformers.LlamaConfig(
        hidden_size=48, intermediate_size=80, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
        tie_word_embeddings=True, rope_theta=500.0, max_position_embeddings=64, **COMMON),
    "llama_untied": lambda: transformers.LlamaConfig(
        hidden_size=48, intermediate_size=80, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=1,
        head_dim=16, tie_word_embeddings=False, max_position_embeddings=64, **COMMON),
    "qwen2": lambda: transformers.Qwen2Config(
        hidden_size=48, intermediate_size=80, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
        tie_word_embeddings=False, max_position_embeddings=64, **COMMON),
}


def _tokenizer():
  vocab = {"<unk>": 0, "<eos>": 1, **{f"w{i}": i for i in range(2, V)}}
  tok = Tokenizer(tok_models.WordLevel(vocab, unk_token="<unk>"))
  tok.pre_tokenizer = pre_tokenizers.Whitespace()
  return transformers.PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", eos_token="<eos>")


def _hf_model(name, seed):
  torch.manual_seed(seed)
  model = transformers.AutoModelForCausalLM.from_config(HF_CONFIGS[name]()).eval()
  with torch.no_grad():  # non-trivial norms and biases too
    for p in model.parameters():
      p.add_(0.05 * torch.randn_like(p))
  return model


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
  out = {}
  for seed, name in enumerate(HF_CONFIGS):
    path = str(tmp_path_factory.mktemp(name))
    model = _hf_model(name, seed)
    model.save_pretrained(path)
    _tokenizer().save_pretrained(path)
    out[name] = (path, model)
  return out


def _hf_logits(model, ids):
  with torch.no_grad():
    return model(torch.tensor(np.asarray(ids))).logits.float().numpy()


def _ids(seed=0, shape=(2, 12)):
  return np.random.default_rng(seed).integers(0, V, shape)


def _greedy(model, prompt, n):
  """Prefill the prompt through the KV cache, then decode one token at a time."""
  prompt = jnp.asarray(prompt)
  cache = init_cache(model.cfg, prompt.shape[0], prompt.shape[1] + n)
  logits, cache = model(prompt, cache)
  out = []
  for _ in range(n):
    tok = jnp.argmax(logits[:, -1], -1)
    out.append(tok)
    logits, cache = model(tok[:, None], cache)
  return np.stack(out, 1)


def _flat(model):
  return {p: np.asarray(v.get_value()) for p, v in nnx.iter_graph(model) if isinstance(v, nnx.Param)}


@pytest.mark.parametrize("name", list(HF_CONFIGS))
def test_import_logits_and_greedy_match_hf(ckpts, name):
  path, ref = ckpts[name]
  model, tok = hf.import_hf(path)
  ids = _ids()
  want = _hf_logits(ref, ids)
  got = np.asarray(model(jnp.asarray(ids))[0])
  diff = np.abs(got - want).max()
  print(f"{name}: max |logit diff| = {diff:.2e} (logit scale {np.abs(want).max():.1f})")
  assert np.abs(want).max() > 1.0 and diff <= 1e-4
  hf_gen = ref.generate(torch.tensor(PROMPT), attention_mask=torch.ones(1, len(PROMPT[0]), dtype=torch.long),
                        do_sample=False, max_new_tokens=STEPS)[:, len(PROMPT[0]):].numpy()
  ours = _greedy(model, PROMPT, STEPS)
  assert len(set(hf_gen[0].tolist())) > 1, hf_gen  # not a degenerate repeat of one token
  np.testing.assert_array_equal(ours, hf_gen)
  assert tok is not None and tok("w5 w7 zz")["input_ids"] == [5, 7, 0]


def test_config_mapping(ckpts):
  cfgs = {n: hf_config_to_model_config(json.load(open(os.path.join(p, "config.json")))) for n, (p, _) in
          ckpts.items()}
  g, nx, lt, lu, q = (cfgs[n] for n in HF_CONFIGS)
  assert (g.pos, g.norm, g.mlp, g.tie_embeddings, g.max_len, g.d_ff) == ("learned", "layer", "gelu_tanh", True,
                                                                          64, 192)
  assert (nx.parallel_residual, nx.rotary_dim, nx.tie_embeddings, nx.mlp) == (True, 4, False, "gelu")
  assert (lt.kv_heads, lt.rope_theta, lt.tie_embeddings, lt.qkv_bias) == (2, 500.0, True, False)
  assert (lu.kv_heads, lu.head_dim, lu.tie_embeddings) == (1, 16, False)
  assert (q.qkv_bias, q.attn_out_bias, q.mlp_bias, q.norm, q.mlp) == (True, False, False, "rms", "swiglu")
  assert hf.import_hf(ckpts["gpt2"][0], max_len=16)[0].pos_embed.embedding.shape == (16, 48)


def test_import_bf16_and_pytorch_bin(ckpts, tmp_path):
  path, ref = ckpts["llama_untied"]
  transformers.AutoModelForCausalLM.from_pretrained(path, dtype=torch.bfloat16).save_pretrained(tmp_path / "bf16")
  model, _ = hf.import_hf(tmp_path / "bf16", dtype="bfloat16")
  q = model.blocks[1].attn.q.kernel.get_value()
  assert q.dtype == jnp.bfloat16 and model.cfg.dtype == "bfloat16"
  want = ref.model.layers[1].self_attn.q_proj.weight.detach().to(torch.bfloat16).float().numpy().T
  np.testing.assert_array_equal(np.asarray(q, np.float32), want)
  assert np.isfinite(np.asarray(model(jnp.asarray(_ids()))[0])).all()
  os.makedirs(tmp_path / "bin")
  torch.save(ref.state_dict(), tmp_path / "bin" / "pytorch_model.bin")
  os.link(os.path.join(path, "config.json"), tmp_path / "bin" / "config.json")
  from_bin, tok = hf.import_hf(tmp_path / "bin")
  assert tok is None
  from_st, _ = hf.import_hf(path)
  a, b = _flat(from_bin), _flat(from_st)
  assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def _randomize(model, seed=0, std=0.3):
  """Garden init is too small to give meaningful logits; draw every param from N(init, std)."""
  state = nnx.state(model, nnx.Param)
  leaves, treedef = jax.tree.flatten(state)
  keys = jax.random.split(jax.random.key(seed), len(leaves))
  nnx.update(model, jax.tree.unflatten(treedef, [x + std * jax.random.normal(k, x.shape, x.dtype)
                                                 for x, k in zip(leaves, keys)]))
  return model


@pytest.mark.parametrize("overrides,shard_bytes", [({}, 2**31), (dict(n_kv_heads=1, tie_embeddings=False), 40_000),
                                                   (dict(qkv_bias=True, attn_out_bias=True, mlp_bias=True), 2**31)])
def test_export_garden_round_trip(tmp_path, overrides, shard_bytes):
  model = _randomize(make_model(garden_config("nano", V, max_len=64, **overrides)))
  tok = _tokenizer() if not overrides else None
  hf.export_hf(_randomize(make_model(garden_config("nano", V, max_len=64)), seed=1), tmp_path)  # stale, replaced
  assert hf.export_hf(model, tmp_path, tok, max_shard_bytes=shard_bytes) == "llama"
  assert os.path.isfile(tmp_path / "model.safetensors.index.json") == (shard_bytes < 2**31)
  ref = transformers.AutoModelForCausalLM.from_pretrained(tmp_path).eval()
  assert type(ref).__name__ == "LlamaForCausalLM"
  ids = _ids(1)
  ours = np.asarray(model(jnp.asarray(ids))[0])
  diff = np.abs(_hf_logits(ref, ids) - ours).max()
  print(f"garden export {overrides}: max |logit diff| = {diff:.2e} (logit scale {np.abs(ours).max():.1f})")
  assert np.abs(ours).max() > 1.0 and diff <= 1e-4
  back, back_tok = hf.import_hf(tmp_path)
  assert back.cfg == model.cfg
  a, b = _flat(model), _flat(back)
  assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
  np.testing.assert_array_equal(np.asarray(back(jnp.asarray(ids))[0]), ours)
  assert (back_tok is None) == (tok is None)


@pytest.mark.parametrize("name", ["gpt2", "gpt_neox", "llama_untied", "qwen2"])
def test_export_imported_round_trip(ckpts, tmp_path, name):
  path, ref = ckpts[name]
  model, tok = hf.import_hf(path)
  arch = hf.export_hf(model, tmp_path, tok)
  assert arch == json.load(open(os.path.join(path, "config.json")))["model_type"]
  again = transformers.AutoModelForCausalLM.from_pretrained(tmp_path).eval()
  ids = _ids(2)
  assert np.abs(_hf_logits(again, ids) - _hf_logits(ref, ids)).max() <= 1e-5
  back, _ = hf.import_hf(tmp_path)
  assert back.cfg == model.cfg
  a, b = _flat(model), _flat(back)
  assert all(np.array_equal(a[k], b[k]) for k in a)


def test_unsupported_architecture(tmp_path):
  (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert", "architectures": ["BertForMaskedLM"]}))
  with pytest.raises(ValueError, match=r"'bert'.*llama"):
    hf.import_hf(tmp_path)
  base = dict(model_type="llama", vocab_size=V, hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
              intermediate_size=64)
  with pytest.raises(ValueError, match="LlamaForSequenceClassification"):
    hf_config_to_model_config({**base, "architectures": ["LlamaForSequenceClassification"]})
  with pytest.raises(ValueError, match="llama3"):
    hf_config_to_model_config({**base, "rope_scaling": {"rope_type": "llama3", "factor": 8.0}})
  with pytest.raises(ValueError, match="hidden_act='gelu'"):
    hf_config_to_model_config({**base, "hidden_act": "gelu"})
  with pytest.raises(ValueError, match="max_len must be >= 1, got 0"):
    hf_config_to_model_config(base, max_len=0)
  with pytest.raises(ValueError, match="no supported HF architecture.*mlp='swiglu'"):
    export_arch(garden_config("paper-draft", V))


def test_missing_files(ckpts, tmp_path):
  with pytest.raises(FileNotFoundError, match=r"config\.json"):
    hf.import_hf(tmp_path)
  path, _ = ckpts["qwen2"]
  os.link(os.path.join(path, "config.json"), tmp_path / "config.json")
  with pytest.raises(FileNotFoundError, match=r"model\.safetensors.*pytorch_model\.bin"):
    hf.import_hf(tmp_path)
  tensors = load_file(os.path.join(path, "model.safetensors"))
  del tensors["model.layers.1.self_attn.k_proj.bias"]
  save_file(tensors, tmp_path / "model.safetensors", metadata={"format": "pt"})
  with pytest.raises(ValueError, match=r"model\.layers\.1\.self_attn\.k_proj\.bias"):
    hf.import_hf(tmp_path)


def test_import_fills_every_param(ckpts):
  model, _ = hf.import_hf(ckpts["gpt_neox"][0])
  leaves = jax.tree.leaves(nnx.state(model))
  assert leaves and all(isinstance(x, jax.Array) for x in leaves)
