"""Import HuggingFace causal LMs (GPT-2, GPT-NeoX/Pythia, Llama, Qwen2) into dsrepro, and export back.

``model, tokenizer = import_hf(path)`` reads a local HF directory (config.json, weights, tokenizer files), or a hub
id such as ``"EleutherAI/pythia-1.4b"`` fetched into the HF cache by :func:`dsrepro.hub.fetch_checkpoint`;
``export_hf(model, path, tokenizer)`` writes one that ``transformers.AutoModelForCausalLM.from_pretrained`` loads.
Config mapping lives in :mod:`dsrepro.hf_config`; this module maps the weights.

Choices:
  * Memory. The model is built abstractly (``nnx.eval_shape``) and filled one HF tensor at a time, so import
    never holds more than the model plus one tensor. Safetensors (single file or sharded with an index json)
    are read with ``safe_open(framework="flax")``, which handles float32 / float16 / bfloat16 alike (numpy has no
    bfloat16). The ``pytorch_model.bin`` fallback uses ``torch.load(mmap=True, weights_only=True)``, so a
    zip-format checkpoint is memory-mapped too (an old non-zip one would fail); it needs torch installed.
  * Weight names with or without the base-model prefix ("transformer.", "gpt_neox.", "model.") are accepted,
    as is NeoX's head under "embed_out." or "lm_head."; unknown tensors (attention-mask buffers,
    rotary inv_freq) are ignored; a missing one is a ValueError naming it. Tied models ignore a stored head.
  * GPT-2 Conv1D weights are already [in, out]; nn.Linear weights are [out, in] and get transposed. GPT-2's
    fused c_attn is [q | k | v] along the output axis; NeoX's query_key_value is per head [N, 3, H].
  * Export writes the tensors in the model's param dtype with torch names and layout, in shards of at most
    ``max_shard_bytes`` (one shard: model.safetensors; more: model-0000i-of-0000n.safetensors plus
    model.safetensors.index.json), holding one shard's worth of converted tensors at a time.
"""
from __future__ import annotations

import contextlib
import json
import hashlib
import math
import os
from pathlib import Path

import jax
import jax.numpy as jnp
from flax import nnx
from safetensors import safe_open
from safetensors.flax import save_file

from dsrepro.models.hf_config import ARCHS, export_arch, hf_config_kwargs, hf_config_to_model_config, model_type
from dsrepro.models.transformer import ModelConfig, Transformer, make_model
from dsrepro.tokenizer import from_pretrained

__all__ = ["checkpoint_fingerprint", "import_hf", "export_hf", "load_tokenizer", "weight_spec",
           "hf_config_to_model_config", "ARCHS"]

WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                "pytorch_model.bin.index.json")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json", "vocab.txt",
                   "spiece.model")
_PREFIX = {"gpt2": "transformer.", "gpt_neox": "gpt_neox.", "llama": "model.", "qwen2": "model."}
_HEAD = {"gpt2": "lm_head.weight", "gpt_neox": "embed_out.weight", "llama": "lm_head.weight",
         "qwen2": "lm_head.weight"}


def weight_spec(cfg: ModelConfig, arch: str) -> list[tuple[str, str, tuple]]:
  """[(hf tensor name, kind, our param paths)] covering every parameter of a Transformer(cfg).

  kind says how the HF tensor relates to ours: "copy" (same array), "T" (transposed: nn.Linear), "rows"
  (learned positions; ours keep the first max_len rows), "cat1" / "cat0" (GPT-2 fused qkv weight / bias,
  concatenated along that axis), "neox_w" / "neox_b" (NeoX fused qkv, interleaved per head)."""
  P, out = _PREFIX[arch], []
  add = lambda name, kind, *paths: out.append((name, kind, paths))

  def linear(name, path, bias, kind="T"):
    add(name + ".weight", kind, path + ("kernel",))
    if bias:
      add(name + ".bias", "copy", path + ("bias",))

  def norm(name, path):
    add(name + ".weight", "copy", path + ("scale",))
    if cfg.norm == "layer":
      add(name + ".bias", "copy", path + ("bias",))

  c = cfg
  if arch == "gpt2":
    add(P + "wte.weight", "copy", ("embed", "embedding"))
    add(P + "wpe.weight", "rows", ("pos_embed", "embedding"))
  else:
    add(P + ("embed_in.weight" if arch == "gpt_neox" else "embed_tokens.weight"), "copy", ("embed", "embedding"))
  for i in range(c.n_layers):
    b = ("blocks", i)
    qkv = [b + ("attn", n, "kernel") for n in "qkv"]
    qkv_b = [b + ("attn", n, "bias") for n in "qkv"]
    if arch == "gpt2":
      h = f"{P}h.{i}."
      norm(h + "ln_1", b + ("ln1",))
      norm(h + "ln_2", b + ("ln2",))
      add(h + "attn.c_attn.weight", "cat1", *qkv)
      add(h + "attn.c_attn.bias", "cat0", *qkv_b)
      linear(h + "attn.c_proj", b + ("attn", "o"), True, "copy")
      linear(h + "mlp.c_fc", b + ("mlp", "up"), True, "copy")
      linear(h + "mlp.c_proj", b + ("mlp", "down"), True, "copy")
    elif arch == "gpt_neox":
      h = f"{P}layers.{i}."
      norm(h + "input_layernorm", b + ("ln1",))
      norm(h + "post_attention_layernorm", b + ("ln2",))
      add(h + "attention.query_key_value.weight", "neox_w", *qkv)
      if c.qkv_bias:
        add(h + "attention.query_key_value.bias", "neox_b", *qkv_b)
      linear(h + "attention.dense", b + ("attn", "o"), c.attn_out_bias)
      linear(h + "mlp.dense_h_to_4h", b + ("mlp", "up"), c.mlp_bias)
      linear(h + "mlp.dense_4h_to_h", b + ("mlp", "down"), c.mlp_bias)
    else:
      h = f"{P}layers.{i}."
      norm(h + "input_layernorm", b + ("ln1",))
      norm(h + "post_attention_layernorm", b + ("ln2",))
      for n in "qkv":
        linear(f"{h}self_attn.{n}_proj", b + ("attn", n), c.qkv_bias)
      linear(h + "self_attn.o_proj", b + ("attn", "o"), c.attn_out_bias)
      for hf_name, ours in (("gate_proj", "gate"), ("up_proj", "up"), ("down_proj", "down")):
        linear(h + "mlp." + hf_name, b + ("mlp", ours), c.mlp_bias)
  norm(P + ("ln_f" if arch == "gpt2" else "final_layer_norm" if arch == "gpt_neox" else "norm"), ("ln_f",))
  if not c.tie_embeddings:
    add(_HEAD[arch], "T", ("lm_head", "kernel"))
  return out


def _to_ours(kind: str, x: jax.Array, cfg: ModelConfig) -> list[jax.Array]:
  if kind == "copy":
    return [x]
  if kind == "T":
    return [x.T]
  if kind == "rows":
    return [x[:cfg.max_len]]
  if kind in ("cat0", "cat1"):
    return jnp.split(x, 3, axis=int(kind[-1]))
  N, H = cfg.n_heads, cfg.head_dim
  if kind == "neox_w":
    x = x.reshape(N, 3, H, -1)
    return [x[:, j].reshape(N * H, -1).T for j in range(3)]
  if kind == "neox_b":
    x = x.reshape(N, 3, H)
    return [x[:, j].reshape(N * H) for j in range(3)]
  raise ValueError(f"unknown weight kind {kind!r}")


def _to_hf(kind: str, xs: list[jax.Array], cfg: ModelConfig) -> jax.Array:
  if kind in ("copy", "rows"):
    return xs[0]
  if kind == "T":
    return xs[0].T
  if kind in ("cat0", "cat1"):
    return jnp.concatenate(xs, axis=int(kind[-1]))
  N, H = cfg.n_heads, cfg.head_dim
  if kind == "neox_w":
    return jnp.stack([x.T.reshape(N, H, -1) for x in xs], axis=1).reshape(3 * N * H, -1)
  if kind == "neox_b":
    return jnp.stack([x.reshape(N, H) for x in xs], axis=1).reshape(3 * N * H)
  raise ValueError(f"unknown weight kind {kind!r}")


def _params(model: Transformer) -> dict[tuple, nnx.Variable]:
  return {path: v for path, v in nnx.iter_graph(model) if isinstance(v, nnx.Param)}


def _torch_tensor_to_jax(t) -> jax.Array:
  import torch  # only for the pytorch_model.bin fallback
  return jnp.asarray((t.float() if t.dtype == torch.bfloat16 else t).numpy())


@contextlib.contextmanager
def _open_weights(path: str):
  """Yields (file key -> file path, get(key) -> jax.Array), reading one tensor per get."""
  fname = next((f for f in WEIGHT_FILES if os.path.isfile(os.path.join(path, f))), None)
  if fname is None:
    raise FileNotFoundError(f"no weights in {path}: looked for {', '.join(WEIGHT_FILES)}")
  full, is_st = os.path.join(path, fname), fname.startswith("model.safetensors")
  with contextlib.ExitStack() as stack:
    handles = {}

    def handle(file):
      if file not in handles:
        if is_st:
          handles[file] = stack.enter_context(safe_open(file, framework="flax"))
        else:
          import torch
          handles[file] = torch.load(file, map_location="cpu", weights_only=True, mmap=True)
      return handles[file]

    if fname.endswith(".index.json"):
      with open(full) as f:
        where = {k: os.path.join(path, v) for k, v in json.load(f)["weight_map"].items()}
    else:
      where = dict.fromkeys(handle(full).keys(), full)

    def get(key):
      h = handle(where[key])
      return h.get_tensor(key) if is_st else _torch_tensor_to_jax(h[key])

    yield where, get


def load_tokenizer(path: str):
  """The HF tokenizer in path (local files only; :func:`dsrepro.tokenizer.from_pretrained`), or None when path has
  no tokenizer files."""
  if not any(os.path.isfile(os.path.join(path, f)) for f in TOKENIZER_FILES):
    return None
  return from_pretrained(path)


def checkpoint_fingerprint(path) -> dict:
  """Identity of a local checkpoint directory for run hashes: resolved path, sha256 of config.json, weight files
  and their sizes (a different checkpoint, or the same one edited, names different runs)."""
  path = Path(path)
  files = sorted(f for f in os.listdir(path) if f in WEIGHT_FILES or (f.startswith("model") and
                                                                       f.endswith(".safetensors")))
  cfg = (path / "config.json").read_bytes() if (path / "config.json").is_file() else b""
  return {"path": str(path.resolve()), "config": hashlib.sha256(cfg).hexdigest()[:16],
          "weights": [[f, (path / f).stat().st_size] for f in files]}


def import_hf(path, dtype: str = "float32", max_len: int | None = None, revision: str | None = None):
  """(Transformer, tokenizer) from a local HF causal-LM directory, or from a hub id (``owner/name`` that is not an
  existing path: the cached snapshot, else downloaded with huggingface_hub; ``revision`` picks a branch, tag or
  commit, e.g. a Pythia training step "step143000"; offline: FileNotFoundError naming what was searched).

  Supported: GPT2LMHeadModel, GPTNeoXForCausalLM, LlamaForCausalLM, Qwen2ForCausalLM (others: ValueError).
  dtype ("float32" | "bfloat16") is both the param and compute dtype. ModelConfig.max_len is the checkpoint's
  max_position_embeddings, capped by max_len if given (GPT-2 keeps the first max_len position embeddings).
  tokenizer is None when the directory has none of TOKENIZER_FILES. A missing config.json or weights file is
  a FileNotFoundError naming the directory and the files looked for."""
  from dsrepro import hub  # noqa: PLC0415
  path = os.fspath(hub.resolve_checkpoint(path, revision=revision))
  cfg_file = os.path.join(path, "config.json")
  if not os.path.isfile(cfg_file):
    raise FileNotFoundError(f"no config.json in {path!r}: a HF model directory needs config.json and one of "
                            f"{', '.join(WEIGHT_FILES)}")
  with open(cfg_file) as f:
    hf = json.load(f)
  arch = model_type(hf)
  cfg = hf_config_to_model_config(hf, max_len=max_len, dtype=dtype)
  model = nnx.eval_shape(lambda: make_model(cfg))
  params, spec = _params(model), weight_spec(cfg, arch)
  expected = {name for name, _, _ in spec}
  with _open_weights(path) as (where, get):
    key_of = {}
    for key in where:
      for name in (key, _PREFIX[arch] + key, "embed_out.weight" if key == "lm_head.weight" else None):
        if name in expected:
          key_of.setdefault(name, key)
    missing = sorted(expected - set(key_of))
    if missing:
      raise ValueError(f"{path}: the weights lack {len(missing)} tensor(s) that {ARCHS[arch]} needs: "
                       f"{', '.join(missing[:8])}{' ...' if len(missing) > 8 else ''}")
    for name, kind, paths in spec:
      for p, x in zip(paths, _to_ours(kind, get(key_of[name]), cfg)):
        var = params[p]
        if x.shape != var.shape:
          raise ValueError(f"{path}: tensor {key_of[name]!r} gives shape {x.shape} for {'.'.join(map(str, p))}, "
                           f"expected {var.shape}")
        var.set_value(jnp.asarray(x, var.dtype))
  return model, load_tokenizer(path)


def export_hf(model: Transformer, path, tokenizer=None, max_shard_bytes: int = 2 * 2**30) -> str:
  """Writes model as a HF directory (config.json, safetensors, tokenizer if given); returns the model_type.

  The architecture is the first of Llama, Qwen2, GPT-2, GPT-NeoX that represents model.cfg exactly (see
  dsrepro.hf_config.export_arch); otherwise a ValueError lists what each lacks. bos/eos/pad ids come from
  the tokenizer (None without one, so HF generate never stops early). Weight files of an earlier export in
  path (model.safetensors, model-*-of-*.safetensors, index json, pytorch_model.bin) are removed first."""
  from transformers import AutoConfig
  cfg, path = model.cfg, os.fspath(path)
  arch = export_arch(cfg)
  tok_id = lambda name: getattr(tokenizer, name, None) if tokenizer is not None else None
  mt, kw = hf_config_kwargs(cfg, tok_id("bos_token_id"), tok_id("eos_token_id"), tok_id("pad_token_id"))
  os.makedirs(path, exist_ok=True)
  for f in os.listdir(path):  # stale weights of an earlier export would shadow (or mix with) the new ones
    if f in WEIGHT_FILES or (f.startswith("model-") and f.endswith(".safetensors")):
      os.remove(os.path.join(path, f))
  AutoConfig.for_model(mt, **kw).save_pretrained(path)
  params, spec = _params(model), weight_spec(cfg, arch)
  nbytes = lambda paths: sum(math.prod(params[p].shape) * params[p].dtype.itemsize for p in paths)
  shards, size = [[]], 0
  for entry in spec:
    if shards[-1] and size + nbytes(entry[2]) > max_shard_bytes:
      shards.append([])
      size = 0
    shards[-1].append(entry)
    size += nbytes(entry[2])
  names = (["model.safetensors"] if len(shards) == 1 else
           [f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors" for i in range(len(shards))])
  weight_map = {}
  for fname, shard in zip(names, shards):
    tensors = {name: _to_hf(kind, [params[p].get_value() for p in paths], cfg) for name, kind, paths in shard}
    save_file(tensors, os.path.join(path, fname), metadata={"format": "pt"})
    weight_map.update(dict.fromkeys(tensors, fname))
  if len(shards) > 1:
    total = sum(nbytes(paths) for _, _, paths in spec)
    with open(os.path.join(path, "model.safetensors.index.json"), "w") as f:
      json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2)
  if tokenizer is not None:
    tokenizer.save_pretrained(path)
  return mt
