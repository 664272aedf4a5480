"""dsrepro vs HuggingFace transformers: greedy plain and speculative decoding of the same trained pair, on CPU.

  .venv/bin/python benchmarks/vs_transformers.py [--n-prompts 8] [--max-new-tokens 64] [--gamma 5] [--threads 1]
      [--target-size small --draft-size nano] [--before-ref REV]

``--before-ref REV`` first runs the benchmark as it was at git revision REV (that revision's dsrepro and script)
with the same arguments and keeps its summary under "before" (``--before JSON`` takes an earlier output instead).

Choices:
* The pair. A byte-level BPE tokenizer (vocab 2048) trained on the GSM8K train split, a garden "micro" target and a
  "nano" draft, each SFT'd on GSM8K train from scratch (Adafactor, relative lr 0.15, batch 16, prompt <= 128 and
  target <= 128 tokens, max_len 256). All three are cached under ``--run-root`` by :mod:`dsrepro.runs` (directory
  = hash of the config), so reruns reuse them. When something must be trained, a child process (this script with
  ``--prepare-only``) does it with every core, before this process pins itself.
* Both models are exported with :func:`dsrepro.hf.export_hf` (Llama) and loaded with
  ``AutoModelForCausalLM.from_pretrained`` (torch float32, eval, CPU, the default attention implementation,
  the default dynamic KV cache, ``torch.inference_mode``; no torch.compile).
* Same work for all four decoders: the first ``--n-prompts`` GSM8K test prompts ([bos] + prompt, left-truncated to
  128 tokens), batch 1, greedy, exactly ``--max-new-tokens`` new tokens. Nothing stops early: dsrepro gets
  ``eos_id=None``; HF gets ``eos_token_id=None`` in both models' generation configs (not min_new_tokens, which
  would mask the eos logit and change the argmax). dsrepro prompts are right-padded to 128 so every prompt
  reuses one compiled program; HF gets the unpadded ids.
* HF assisted generation: ``target.generate(..., assistant_model=draft)`` with the draft's generation config set to
  ``num_assistant_tokens=gamma``, ``num_assistant_tokens_schedule="constant"`` and
  ``assistant_confidence_threshold=0`` (0 disables the early-stop-on-low-confidence criterion and its ROC
  threshold tuning), so each round drafts exactly gamma tokens as dsrepro's SpecConfig(gamma) does.
* Threads: the process is pinned (``sched_setaffinity``) to ``--threads`` cores before JAX or torch start, and
  ``torch.set_num_threads(threads)``; XLA sizes its CPU pools from the affinity mask. Default 1: the models are
  tiny, batch 1 gains nothing from intra-op threads, and the 2-core box is shared.
* Timing: wall clock of each public API call end to end (HF: ``generate``; dsrepro: ``generate`` /
  ``speculative_generate`` plus ``block_until_ready``), after one untimed warm-up call per method and prompt
  (the first compiles dsrepro's programs; trace counters confirm no recompilation afterwards). ``--repeats``
  rounds, each over all prompts and methods interleaved; per (method, prompt) the median round is kept; tok/s is
  total new tokens / summed medians. The 1-minute load average is recorded before and after.
* Cost model: each framework's draft is also timed alone (plain greedy, same prompts), giving the draft / target
  per-token cost ratio c; a block costs about gamma * c + 1 target steps (the (gamma+1)-token verify call taken
  as one step), so the predicted SD speedup is tokens per block / (gamma * c + 1). At these tiny sizes decoding is
  per-call overhead bound, so c is far above the parameter ratio and SD can lose to plain decoding. That model
  takes the verify call for one target step; on CPU a (gamma+1)-token call of a matmul-bound target costs ~2x a
  1-token one, so dsrepro's summary also gives the latency-based prediction of benchmarks/speculative.py:
  tau * t_target / (gamma * t_draft + t_verify) with the three in-loop latencies (``evaluate.latencies``,
  in_loop=True) and the realized speedup over it. Both predictions ignore the prefill, which the end-to-end
  times include (the target's for both decoders, the draft's as well for SD).
* Identity: every method's tokens are compared with HF plain greedy (the reference) token for token; a mismatch
  is reported with its first position and the reference model's top-1 / top-2 logit margin there (a near tie
  that float differences between frameworks can flip). Also recorded: the max |logit| difference between the
  two frameworks' full forward passes over each reference sequence, and the smallest top-2 margin on that path.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from dsrepro import runs

OUT = Path(__file__).parent / "results" / "vs_transformers.json"
VOCAB, MAX_PROMPT, MAX_TARGET, MAX_LEN = 2048, 128, 128, 256
METHODS = ("hf_plain", "hf_assisted", "ds_plain", "ds_spec")
DRAFT_METHODS = ("hf_draft_plain", "ds_draft_plain")  # timed only: the draft / target cost ratio c


def run_configs(args) -> dict:
  """The cached runs (kind -> config); each model config names its tokenizer's config so they change together."""
  tok_cfg = {"task": "gsm8k", "split": "train", "vocab_size": VOCAB, "min_frequency": 2}
  data = {"task": "gsm8k", "split": "train", "max_prompt": MAX_PROMPT, "max_target": MAX_TARGET, "pad_to": MAX_LEN}
  train = dict(batch_size=16, learning_rate=0.15, warmup_steps=20, schedule="cosine", ckpt_every=0, log_every=25)
  sft = lambda size, steps: {"size": size, "max_len": MAX_LEN, "tokenizer": tok_cfg, "data": data,
                             "train": {**train, "steps": steps}, "eval": {"split": "validation", "limit": 128}}
  return {"tok": tok_cfg, "target": sft(args.target_size, args.target_steps),
          "draft": sft(args.draft_size, args.draft_steps)}


def run_dirs(args) -> dict:
  cfgs = run_configs(args)
  return {k: runs.run_dir_for(args.run_root, "tokenizer" if k == "tok" else f"sft-{k}", c) for k, c in cfgs.items()}


def prepare(args) -> None:
  """Train (or find) the tokenizer, target and draft."""
  from dsrepro import data, tokenizer, train
  from dsrepro.models.transformer import garden_config
  cfgs, dirs = run_configs(args), run_dirs(args)
  if not runs.is_done(dirs["tok"]):
    t0 = time.perf_counter()
    tok = tokenizer.train_tokenizer(data.task_texts("gsm8k", "train"), VOCAB)
    tokenizer.save_tokenizer(tok, dirs["tok"] / "tokenizer")
    runs.mark_done(dirs["tok"], {"seconds": time.perf_counter() - t0, "vocab": len(tok)})
  tok = tokenizer.load_tokenizer(dirs["tok"] / "tokenizer")
  for role in ("target", "draft"):
    if runs.is_done(dirs[role]):
      continue
    c = cfgs[role]
    enc = lambda split, limit=None: tokenizer.encode_examples(tok, data.load_task("gsm8k", split, limit),
                                                              MAX_PROMPT, MAX_TARGET, pad_to=MAX_LEN)
    as_data = lambda e: {"tokens": e.tokens_NxL, "loss_mask": e.loss_mask_NxL}
    model_cfg = garden_config(c["size"], len(tok), max_len=MAX_LEN)
    t0 = time.perf_counter()
    train.train_sft(model_cfg, train.TrainConfig(**c["train"]), as_data(enc("train")), dirs[role],
                    eval_data=as_data(enc("validation", c["eval"]["limit"])), desc=f"sft {role}")
    print(f"trained {role} ({c['size']}, {c['train']['steps']} steps) in {time.perf_counter() - t0:.0f} s "
          f"-> {dirs[role]}", flush=True)


def pin_threads(n: int) -> list[int]:
  cores = sorted(os.sched_getaffinity(0))[:n]
  os.sched_setaffinity(0, set(cores))
  return cores


def first_mismatch(a, b) -> int | None:
  """First index where the 1-D sequences differ (a length difference counts at the shorter length), else None."""
  a, b = np.asarray(a).reshape(-1), np.asarray(b).reshape(-1)
  n = min(len(a), len(b))
  diff = np.flatnonzero(a[:n] != b[:n])
  if len(diff):
    return int(diff[0])
  return None if len(a) == len(b) else n


def load_hf(path):
  import torch
  from transformers import AutoModelForCausalLM
  model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
  model.generation_config.eos_token_id = None
  model.generation_config.pad_token_id = 0
  return model


def main():
  ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  ap.add_argument("--n-prompts", type=int, default=8)
  ap.add_argument("--max-new-tokens", type=int, default=64)
  ap.add_argument("--gamma", type=int, default=5)
  ap.add_argument("--repeats", type=int, default=3)
  ap.add_argument("--threads", type=int, default=1)
  ap.add_argument("--target-size", default="micro")
  ap.add_argument("--draft-size", default="nano")
  ap.add_argument("--target-steps", type=int, default=300)
  ap.add_argument("--draft-steps", type=int, default=300)
  ap.add_argument("--run-root", type=Path, default=Path("runs/bench"))
  ap.add_argument("--out", type=Path, default=OUT)
  ap.add_argument("--before", type=Path, default=None,
                  help="a JSON of this benchmark from earlier code: its summary is kept under 'before'")
  ap.add_argument("--before-ref", default=None,
                  help="first run this benchmark as of git revision REV (its dsrepro and this script, from git "
                       "archive) with the same arguments, and keep that summary under 'before'")
  ap.add_argument("--prepare-only", action="store_true", help="only train / find the tokenizer and models")
  args = ap.parse_args()
  if args.prepare_only:
    return prepare(args)
  if min(args.n_prompts, args.max_new_tokens, args.gamma, args.repeats, args.threads) < 1:
    raise ValueError("--n-prompts, --max-new-tokens, --gamma, --repeats and --threads must all be >= 1")
  if MAX_PROMPT + args.max_new_tokens + args.gamma + 1 > MAX_LEN:
    raise ValueError(f"--max-new-tokens + --gamma must be <= {MAX_LEN - MAX_PROMPT - 1}")
  dirs = run_dirs(args)
  if not all(runs.is_done(d) for d in dirs.values()):
    subprocess.run([sys.executable, __file__, "--prepare-only", *sys.argv[1:]], check=True)
  if args.before_ref:
    args.before = run_before(args.before_ref, sys.argv[1:])
  cores = pin_threads(args.threads)
  bench(args, dirs, cores)


def run_before(rev: str, argv: list[str]) -> Path:
  """Run this benchmark as of ``rev`` (``git archive`` of its dsrepro/ and this script, imported from there) with
  ``argv`` minus --before-ref / --before / --out, in a child process; returns the JSON it wrote."""
  import tempfile
  drop = {"--before-ref", "--before", "--out"}
  keep = [a for i, a in enumerate(argv) if a not in drop and (i == 0 or argv[i - 1] not in drop)]
  root = subprocess.run(["git", "rev-parse", "--show-toplevel"], cwd=Path(__file__).parent, check=True,
                        capture_output=True, text=True).stdout.strip()
  tmp = Path(tempfile.mkdtemp(prefix="vs_transformers_before_"))
  archive = subprocess.run(["git", "archive", rev, "dsrepro", "benchmarks/vs_transformers.py"], cwd=root, check=True,
                           capture_output=True).stdout
  subprocess.run(["tar", "-x", "-C", str(tmp)], input=archive, check=True)
  out = tmp / "before.json"
  subprocess.run([sys.executable, str(tmp / "benchmarks" / "vs_transformers.py"), *keep, "--out", str(out)],
                 check=True, env={**os.environ, "PYTHONPATH": str(tmp)})
  return out


def bench(args, dirs, cores):
  import jax
  import flax
  import torch
  import transformers
  from dsrepro import data, tokenizer
  from dsrepro.sd import decode, speculative
  from dsrepro.sd.decode import DecodeConfig, generate
  from dsrepro.models.hf import export_hf
  from dsrepro.sd.speculative import SpecConfig, speculative_generate
  transformers.logging.set_verbosity_error()
  torch.set_num_threads(args.threads)
  N, G = args.max_new_tokens, args.gamma

  tok = tokenizer.load_tokenizer(dirs["tok"] / "tokenizer")
  ds = {r: runs.load_model(dirs[r]) for r in ("target", "draft")}
  hf = {}
  for r in ("target", "draft"):
    export_hf(ds[r], dirs[r] / "hf", tok)
    hf[r] = load_hf(dirs[r] / "hf")
  hf["draft"].generation_config.num_assistant_tokens = G
  hf["draft"].generation_config.num_assistant_tokens_schedule = "constant"
  hf["draft"].generation_config.assistant_confidence_threshold = 0.0

  examples = data.load_task("gsm8k", "test", args.n_prompts)
  prompts_NxP, lens_N = tokenizer.encode_prompts(tok, [e.prompt for e in examples], MAX_PROMPT, pad_to=MAX_PROMPT)
  dcfg = DecodeConfig(max_new_tokens=N, temperature=0.0, eos_id=None, pad_id=0)
  scfg = SpecConfig(gamma=G, max_new_tokens=N, temperature=0.0, eos_id=None, pad_id=0)
  key = jax.random.key(0)
  calls = {"target": 0, "draft": 0}
  counting = [False]
  hooks = [hf[r].register_forward_hook(lambda *_, r=r: calls.__setitem__(r, calls[r] + counting[0]))
           for r in ("target", "draft")]

  def run(method, i):
    """Tokens (N,) and stats of one decode of prompt i."""
    ids = torch.tensor(prompts_NxP[i:i + 1, :lens_N[i]], dtype=torch.long)
    if method.startswith("hf"):
      kw = {"assistant_model": hf["draft"]} if method == "hf_assisted" else {}
      model = hf["draft" if "draft" in method else "target"]
      with torch.inference_mode():
        out = model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False, max_new_tokens=N,
                                    eos_token_id=None, pad_token_id=0, **kw)
      return out[0, ids.shape[1]:].numpy(), {}
    p, n = prompts_NxP[i:i + 1], lens_N[i:i + 1]
    if method in ("ds_plain", "ds_draft_plain"):
      out = jax.block_until_ready(generate(ds["draft" if "draft" in method else "target"], p, n, dcfg, key))
      return np.asarray(out.tokens_BxN[0]), {"num": int(out.num_B[0])}
    out = jax.block_until_ready(speculative_generate(ds["target"], ds["draft"], p, n, scfg, key))
    acc = np.asarray(out.accepted_BxK[0])
    return np.asarray(out.tokens_BxN[0]), {"num": int(out.num_B[0]), "target_calls": int(out.target_calls_B[0]),
                                           "accepted": acc[acc >= 0].tolist()}

  # warm-up (compiles dsrepro; HF forward calls are counted here, outside the timed runs)
  tokens, stats = {}, {}
  t0 = time.perf_counter()
  for i in range(args.n_prompts):
    for m in METHODS + DRAFT_METHODS:
      calls.update(target=0, draft=0)
      counting[0] = m.startswith("hf")
      tokens[m, i], stats[m, i] = run(m, i)
      counting[0] = False
      if m in ("hf_plain", "hf_assisted"):
        stats[m, i] = {"target_forward_calls": calls["target"], "draft_forward_calls": calls["draft"]}
  warm_s = time.perf_counter() - t0
  for h in hooks:  # counted in the warm-up only; the timed runs go without hooks
    h.remove()
  traces = (decode.TRACE_COUNT["generate"], speculative.TRACE_COUNT["speculative"])

  load_before = os.getloadavg()
  times = {(m, i): [] for m in METHODS + DRAFT_METHODS for i in range(args.n_prompts)}
  for _ in range(args.repeats):
    for i in range(args.n_prompts):
      for m in METHODS + DRAFT_METHODS:
        t0 = time.perf_counter()
        toks, _ = run(m, i)
        times[m, i].append(time.perf_counter() - t0)
        if first_mismatch(toks, tokens[m, i]) is not None:
          raise RuntimeError(f"{m} prompt {i}: output changed between runs")
  load_after = os.getloadavg()
  if (decode.TRACE_COUNT["generate"], speculative.TRACE_COUNT["speculative"]) != traces:
    raise RuntimeError("dsrepro recompiled during the timed runs")

  # identity + numerics diagnostics against HF plain greedy
  per_prompt, logit_diffs, margins = [], [], []
  for i in range(args.n_prompts):
    ref = tokens["hf_plain", i]
    seq = np.concatenate([prompts_NxP[i, :lens_N[i]], ref])[None]
    with torch.inference_mode():
      hf_logits = hf["target"](torch.tensor(seq, dtype=torch.long)).logits[0].numpy()
    ds_logits = np.asarray(ds["target"](jax.numpy.asarray(seq, jax.numpy.int32))[0][0])
    path = hf_logits[lens_N[i] - 1:-1]                       # logits that chose each generated token
    top2 = np.sort(path, -1)[:, -2:]
    margin = top2[:, 1] - top2[:, 0]
    logit_diffs.append(float(np.abs(hf_logits - ds_logits).max()))
    margins.append(float(margin.min()))
    row = {"id": examples[i].id, "prompt_len": int(lens_N[i]), "max_abs_logit_diff": logit_diffs[-1],
           "min_top2_margin": margins[-1],
           "median_s": {m: statistics.median(times[m, i]) for m in METHODS + DRAFT_METHODS}}
    for m in METHODS:
      pos = first_mismatch(tokens[m, i], ref)
      row[m] = {"match": pos is None, "first_mismatch": pos, **stats[m, i]}
      if pos is not None:
        row[m]["ref_top2_margin_there"] = float(margin[pos]) if pos < len(margin) else None
    per_prompt.append(row)
  n_tok = args.n_prompts * N
  total = {m: sum(r["median_s"][m] for r in per_prompt) for m in METHODS + DRAFT_METHODS}
  tps = {m: n_tok / total[m] for m in METHODS + DRAFT_METHODS}
  acc = [a for r in per_prompt for a in r["ds_spec"]["accepted"]]
  from dsrepro.sd import evaluate, theory
  lat = evaluate.latencies(ds["target"], ds["draft"], G, context=int(np.mean(lens_N)) + N // 2, in_loop=True,
                           cache_len=MAX_PROMPT + N + G + 1)
  pred_lat = float(theory.predicted_speedup(n_tok / sum(r["ds_spec"]["target_calls"] for r in per_prompt),
                                            lat["t_target"], lat["t_draft"], lat["t_verify"], G))
  hf_t = sum(r["hf_assisted"]["target_forward_calls"] for r in per_prompt)
  ds_t = sum(r["ds_spec"]["target_calls"] for r in per_prompt)
  c = {"hf": total["hf_draft_plain"] / total["hf_plain"], "ds": total["ds_draft_plain"] / total["ds_plain"]}
  per_block = {"hf": n_tok / hf_t, "ds": n_tok / ds_t}
  summary = {
      "tokens_per_s": tps, "total_s": total, "new_tokens_total": n_tok,
      "matches_vs_hf_plain": {m: sum(r[m]["match"] for r in per_prompt) for m in METHODS},
      "speedup_hf_assisted_over_hf_plain": tps["hf_assisted"] / tps["hf_plain"],
      "speedup_ds_spec_over_ds_plain": tps["ds_spec"] / tps["ds_plain"],
      "ds_spec_over_hf_assisted": tps["ds_spec"] / tps["hf_assisted"],
      "ds_plain_over_hf_plain": tps["ds_plain"] / tps["hf_plain"],
      "ds_spec_mean_accepted_per_block": float(np.mean(acc)),
      "ds_spec_tokens_per_target_call": n_tok / ds_t,
      "hf_assisted_target_forward_calls": hf_t, "ds_spec_target_calls": ds_t,
      "hf_assisted_tokens_per_target_call": n_tok / hf_t,
      "draft_target_cost_ratio_c": c,
      "predicted_sd_speedup": {k: per_block[k] / (G * c[k] + 1) for k in c},
      "ds_in_loop_latencies": lat,
      "predicted_sd_speedup_latency": pred_lat,
      "ds_spec_realized_over_predicted_latency": (tps["ds_spec"] / tps["ds_plain"]) / pred_lat,
      "max_abs_logit_diff": max(logit_diffs), "min_top2_margin": min(margins),
  }
  cpu = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")), "?")
  result = {
      "versions": {"python": platform.python_version(), "jax": jax.__version__, "flax": flax.__version__,
                   "transformers": transformers.__version__, "torch": torch.__version__, "numpy": np.__version__},
      "device": {"cpu": cpu, "cpu_count": os.cpu_count(), "machine": platform.machine(),
                 "jax_backend": jax.default_backend(), "torch_device": "cpu"},
      "threads": {"pinned_cores": cores, "torch_num_threads": torch.get_num_threads(),
                  "xla": "pools sized by the affinity mask"},
      "load_1m_5m_15m": {"before_timing": load_before, "after_timing": load_after},
      "date": time.strftime("%Y-%m-%d %H:%M:%S"),
      "settings": {"n_prompts": args.n_prompts, "max_new_tokens": N, "gamma": G, "repeats": args.repeats,
                   "batch": 1, "greedy": True, "eos": "none (never stops early)",
                   "dsrepro_prompt_pad_to": MAX_PROMPT, "hf_dtype": "float32",
                   "hf_attn_implementation": hf["target"].config._attn_implementation,
                   "hf_assistant": {"num_assistant_tokens": G, "num_assistant_tokens_schedule": "constant",
                                    "assistant_confidence_threshold": 0.0},
                   "warmup_s": warm_s, "dsrepro_traces": {"generate": traces[0], "speculative": traces[1]}},
      "models": {r: {"run_dir": str(dirs[r]), "config": runs.read_json(dirs[r] / "config.json")["config"],
                     "final": runs.read_json(dirs[r] / runs.DONE), "params": _count(ds[r])}
                 for r in ("target", "draft")},
      "summary": summary, "per_prompt": per_prompt,
  }
  if args.before:
    old = runs.read_json(args.before)
    result["before"] = {"source": args.before_ref or str(args.before), "date": old.get("date"),
                        "settings": old.get("settings"), "load_1m_5m_15m": old.get("load_1m_5m_15m"),
                        "summary": old["summary"]}
  args.out.parent.mkdir(parents=True, exist_ok=True)
  runs.write_json(args.out, result)
  print_table(result)
  print(f"wrote {args.out}")


def _count(model) -> int:
  from dsrepro.models.transformer import count_params
  return count_params(model)


def print_table(res: dict) -> None:
  s, st = res["summary"], res["settings"]
  print(f"{st['n_prompts']} GSM8K prompts x {st['max_new_tokens']} new tokens, greedy, batch 1, gamma "
        f"{st['gamma']}, {res['threads']['torch_num_threads']} thread(s); load before/after "
        f"{res['load_1m_5m_15m']['before_timing'][0]:.2f}/{res['load_1m_5m_15m']['after_timing'][0]:.2f}")
  own = {"hf_plain": 1.0, "hf_assisted": s["speedup_hf_assisted_over_hf_plain"], "ds_plain": 1.0,
         "ds_spec": s["speedup_ds_spec_over_ds_plain"]}
  print(f"{'method':14} {'tok/s':>9} {'vs own plain':>12} {'match':>7}")
  for m in METHODS:
    print(f"{m:14} {s['tokens_per_s'][m]:>9.1f} {own[m]:>11.2f}x {s['matches_vs_hf_plain'][m]:>3}/{st['n_prompts']}")
  for m in DRAFT_METHODS:
    print(f"{m:14} {s['tokens_per_s'][m]:>9.1f} {'(draft alone)':>12}")
  print(f"dsrepro SD / HF assisted: {s['ds_spec_over_hf_assisted']:.2f}x; dsrepro plain / HF plain: "
        f"{s['ds_plain_over_hf_plain']:.2f}x; accepted/block {s['ds_spec_mean_accepted_per_block']:.2f}; "
        f"tokens/target call ds {s['ds_spec_tokens_per_target_call']:.2f} hf "
        f"{s['hf_assisted_tokens_per_target_call']:.2f}; max |logit diff| {s['max_abs_logit_diff']:.1e}; "
        f"min top-2 margin {s['min_top2_margin']:.3f}")
  c, pred = s["draft_target_cost_ratio_c"], s["predicted_sd_speedup"]
  print(f"draft/target cost ratio c: hf {c['hf']:.2f}, ds {c['ds']:.2f}; predicted SD speedup "
        f"(tokens per block / (gamma c + 1)): hf {pred['hf']:.2f}x, ds {pred['ds']:.2f}x")
  lat = s["ds_in_loop_latencies"]
  print(f"dsrepro in-loop latencies: draft {1e3 * lat['t_draft']:.3f} ms, target {1e3 * lat['t_target']:.3f} ms, "
        f"verify ({st['gamma'] + 1} tokens) {1e3 * lat['t_verify']:.3f} ms; latency-based prediction "
        f"{s['predicted_sd_speedup_latency']:.2f}x, realized / predicted "
        f"{s['ds_spec_realized_over_predicted_latency']:.2f}")
  if "before" in res:
    b = res["before"]["summary"]
    print(f"before ({res['before']['source']}): ds_plain {b['tokens_per_s']['ds_plain']:.1f} tok/s, ds_spec "
          f"{b['tokens_per_s']['ds_spec']:.1f} tok/s, SD / plain {b['speedup_ds_spec_over_ds_plain']:.2f}x, matches "
          f"{b['matches_vs_hf_plain']['ds_spec']}/{st['n_prompts']}")


if __name__ == "__main__":
  main()
