"""Speculative decoding on this machine: per-block cost breakdown, predicted vs realized speedup, batched SD.

  .venv/bin/python benchmarks/speculative.py --cpus 1 --clock cpu [--before-ref REV]

Pairs (``TARGET/DRAFT`` garden sizes):
* random (``--pairs``, default small/nano base/nano micro/nano base/micro): dsrepro init (target seed 0, draft
  seed 1) at ``--vocab`` / ``--max-len``, then both models' final-norm scale ``ln_f.scale`` (which multiplies the
  logits: embeddings are tied) times ``--logit-scale`` (1.5: alpha ~0.7 at T = 1); ``--n-prompts`` prompts of
  ``--prompt-len`` uniform random tokens. Greedy decoding of random weights is degenerate (both models mostly
  repeat the last token, so nearly every draft is accepted): its tau is not a real one, its per-block costs are.
* trained (``--trained``, default small/nano): the GSM8K SFT pair of ``benchmarks/vs_transformers.py`` (the same
  cached runs under ``--run-root``; a child process trains them when missing), its tokenizer, and the first
  GSM8K test prompts padded to 128 tokens, max_len 256 (vs_transformers' settings).
The ``quick`` profile pair is micro/nano; for another pair (e.g. a ``cpu`` profile) pass ``--pairs T/D --vocab V
--prompt-len P --max-len L``.

For each pair, decoding (``--temperatures``: 0 = greedy, 1) and gamma (``--gammas``), ``--rounds`` rounds of
(every timing of a round is taken within seconds; medians over rounds are reported, with min / max):
* in-loop latencies (``evaluate.loop_latency``: per call inside a jitted loop, as SD and plain decoding run them):
  draft 1 token, target 1 token, target gamma + 1 tokens; KV cache at the mean decoding context, buffer length
  P + N + gamma + 1 as SD allocates. predicted = tau * t_target / (gamma * t_draft + t_verify).
* realized (``evaluate.wall_time_speedup``): plain target decoding vs SD, batch 1, same prompts and keys, whole
  ``generate`` calls; ``realized_decode`` subtracts the measured prefills (``evaluate.prefill_latency``: the
  target's for plain, target + draft for SD), which the formula does not count. tau, alpha_hat from these runs.
* per-block breakdown. ``block_s``: SD decode time per block (prefill subtracted) = ``model_calls_s`` (gamma *
  t_draft + t_verify, the isolated in-loop latencies) + ``alternation_s`` + ``logic_s`` (``else_s`` is their
  sum). ``shaped_s``: the same model calls in SD's order in a jitted loop, alternating draft and target but with
  no SD logic; alternation_s = shaped_s - model_calls_s is what alternating costs (the target's weight stream
  evicts the draft's weights from the CPU caches; the isolated t_draft is measured hot), and logic_s = block_s -
  shaped_s everything else (sampling, accept/reject, bookkeeping, the catch-up draft calls, Python per call).
  ``realized_over_predicted_shaped_decode`` compares with the prediction from shaped_s. ``trace``: ONE SD call
  per prompt of the first ``--trace-prompts`` prompts under ``jax.profiler``; every XLA:CPU thunk executed inside
  the SD while loop is attributed, from the compiled HLO's metadata (the Python stack of each op), to the draft
  calls (model ops under ``_draft`` / ``_catch_up``), the verify call (the target's model ops, with whatever XLA
  fused into them, e.g. the softmax of p), or everything else (sampling, accept/reject, bookkeeping); ops
  without metadata inherit the class of their operands. Per op the median duration over its
  executions is kept (robust to preemption); ``gaps_s`` is the loop time between thunks (executor + profiler).
  The profiler slows the loop (~1 us per thunk and more on library calls: up to ~1.7x for the tiny micro/nano
  pair), so trace times run above the untraced ones; ``block_s_split`` splits the untraced block_s by the traced
  shares.
* batched (``--batches``, at ``--batch-gamma``): tokens/s of one ``speculative_generate`` vs one ``generate``
  call over the first B prompts (ragged acceptance: the SD loop runs until its slowest row is done).

Results go to ``--out`` under ``runs[--label]`` (merged with what the file holds). ``--before-ref REV`` first runs
this script on REV's ``dsrepro`` (``git archive``, in a child process, label "before"), then on the working tree
(label "after"), and adds a before/after ``comparison``. ``--src DIR`` imports dsrepro from DIR instead.
On the shared 2-core VM, ``--cpus 1 --clock cpu`` (one XLA thread, process CPU time) resists other processes.
"""
from __future__ import annotations

import argparse
import collections
import glob
import gzip
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE / "results" / "speculative.json"
RANDOM_PAIRS = ("small/nano", "base/nano", "micro/nano", "base/micro")
TRAINED_PAIRS = ("small/nano",)


def parse_args(argv=None):
  ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  ap.add_argument("--pairs", nargs="*", default=list(RANDOM_PAIRS), help="random-weight TARGET/DRAFT pairs")
  ap.add_argument("--trained", nargs="*", default=list(TRAINED_PAIRS), help="GSM8K SFT TARGET/DRAFT pairs")
  ap.add_argument("--target-steps", type=int, default=300)
  ap.add_argument("--draft-steps", type=int, default=300)
  ap.add_argument("--run-root", type=Path, default=Path("runs/bench"))
  ap.add_argument("--vocab", type=int, default=2048)
  ap.add_argument("--max-len", type=int, default=256)
  ap.add_argument("--prompt-len", type=int, default=64, help="random pairs; trained pairs use 128 (padded)")
  ap.add_argument("--max-new-tokens", type=int, default=64)
  ap.add_argument("--logit-scale", type=float, default=1.5)
  ap.add_argument("--temperatures", type=float, nargs="+", default=[0.0, 1.0])
  ap.add_argument("--gammas", type=int, nargs="+", default=[3, 5, 7])
  ap.add_argument("--n-prompts", type=int, default=8, help="batch-1 timing prompts")
  ap.add_argument("--rounds", type=int, default=5)
  ap.add_argument("--trace-prompts", type=int, default=2)
  ap.add_argument("--batches", type=int, nargs="*", default=[1, 8, 32])
  ap.add_argument("--batch-gamma", type=int, default=5)
  ap.add_argument("--cpus", type=int, nargs="*", default=None,
                  help="pin the process to these CPU ids (XLA sizes its thread pool from the affinity)")
  ap.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                  help="wall: time.perf_counter; cpu: time.process_time, the process's CPU time -- with --cpus "
                       "pinning one core, the wall time on an idle core (robust to other processes)")
  ap.add_argument("--seed", type=int, default=0)
  ap.add_argument("--label", default="after", help="key of this run in the JSON's runs")
  ap.add_argument("--src", type=Path, default=None, help="import dsrepro from this directory")
  ap.add_argument("--before-ref", default=None, help="also run REV's dsrepro first, as label 'before'")
  ap.add_argument("--out", type=Path, default=OUT)
  ap.add_argument("--one-process", action="store_true", help="all pairs in this process (default: one child each)")
  return ap.parse_args(argv)


# ------------------------------------------------------------------------------------------ trace breakdown


def hlo_classes(hlo_text: str) -> dict[str, str]:
  """Instruction name -> "draft" | "verify" | "other" for the compiled SD program, from op metadata.

  Each op's Python stack (the module's StackFrames) decides: a model op (``Transformer.*`` in the stack) under
  ``_draft`` / ``_catch_up`` -> draft, another model op (the target's, in the loop body) -> verify, anything else
  (sampling, accept/reject, bookkeeping) -> other. A fusion holding a model's matmul is that model's, any other
  fusion its root op's (an argmax fused with the bitcast of the logits it reads is sampling); an op without
  metadata takes its operands' class."""
  names, files, frames = {}, {}, {}
  section = None
  for ln in hlo_text.splitlines():
    if ln in ("FileNames", "FunctionNames", "FileLocations", "StackFrames"):
      section = ln
      continue
    m = re.match(r"^(\d+) (.*)$", ln)
    if not m:
      section = None if ln.startswith(("%", "ENTRY", "HloModule")) else section
      continue
    i, rest = int(m.group(1)), m.group(2)
    if section == "FunctionNames":
      names[i] = rest.strip('"')
    elif section == "FileLocations":
      files[i] = int(re.search(r"function_name_id=(\d+)", rest).group(1))
    elif section == "StackFrames":  # parent_frame_id is printed as 1 + the parent's id (1: no parent)
      frames[i] = (int(re.search(r"file_location_id=(\d+)", rest).group(1)),
                   int(re.search(r"parent_frame_id=(\d+)", rest).group(1)) - 1)

  def stack(fid):
    out = []
    while fid in frames and len(out) < 200:
      loc, parent = frames[fid]
      out.append(names.get(files.get(loc), ""))
      fid = parent
    return out

  def of_stack(fid):
    st = stack(fid)
    if not any(f.startswith("Transformer.") for f in st):
      return "other"
    return "draft" if any(f.split(".")[0] in ("_draft", "_catch_up") for f in st) else "verify"

  own, calls, operands, opcode, root, members, cur = {}, {}, {}, {}, {}, collections.defaultdict(list), None
  for ln in hlo_text.splitlines():
    h = re.match(r"^(?:ENTRY )?%([\w.\-]+) .*\{$", ln)
    if h:
      cur = h.group(1)
      continue
    m = re.match(r"\s*(ROOT )?%([\w.\-]+) = (.*)$", ln)
    if not m or cur is None:
      continue
    is_root, name, rest = m.groups()
    members[cur].append(name)
    if is_root:
      root[cur] = name
    sf = re.search(r"stack_frame_id=(\d+)", rest)
    if sf:
      own[name] = of_stack(int(sf.group(1)))
    c = re.search(r"calls=%([\w.\-]+)", rest)
    if c:
      calls[name] = c.group(1)
    body = re.search(r"\b([\w\-]+)\((.*?)\)(?:, |$)", rest)
    opcode[name] = body.group(1) if body else ""
    operands[name] = re.findall(r"%([\w.\-]+)", body.group(2)) if body else []
  memo: dict[str, str | None] = {}

  def cls(name, depth=0):
    """A fusion with a model product (dot) in it is that model's; else its root's class; else its own
    metadata's; else its operands'."""
    if name in memo:
      return memo[name]
    memo[name] = None  # cycle guard
    found = None
    comp = calls.get(name)
    if comp and opcode.get(name) == "fusion":
      dots = [own.get(x) for x in members[comp] if opcode.get(x) in ("dot", "convolution", "fusion")]
      found = next((c for c in ("draft", "verify") if c in dots), None) or own.get(root.get(comp))
    if found is None:
      found = own.get(name)
    if found is None and depth < 40:
      found = next((c for c in (cls(x, depth + 1) for x in operands.get(name, [])) if c and c != "other"), None)
    memo[name] = found
    return found

  return {n: cls(n) or "other" for n in operands}


def _trace_events(trace_dir: str) -> list[dict]:
  files = glob.glob(os.path.join(trace_dir, "**", "*.trace.json.gz"), recursive=True)
  return json.load(gzip.open(max(files, key=os.path.getmtime)))["traceEvents"] if files else []


def trace_breakdown(target, draft, prompts_NxP, plen_N, cfg, key, n_calls: int, top: int = 8) -> dict:
  """Per-block draft / verify / other thunk time of SD runs under jax.profiler (see the module docstring)."""
  import jax
  import jax.numpy as jnp
  import numpy as np
  from dsrepro.sd import speculative
  rows = [(jnp.asarray(prompts_NxP[i:i + 1]), jnp.asarray(plen_N[i:i + 1])) for i in range(n_calls)]
  args = lambda p, l: (target, draft, p, l, key, jnp.float32(1.0), cfg)
  hlo = speculative._speculative.lower(*args(*rows[0])).compile().as_text()
  classes = hlo_classes(hlo)
  entry = hlo[hlo.index("\nENTRY "):]
  loop = re.search(r"%(while[\w.\-]*) = ", entry).group(1)
  for p, l in rows:
    jax.block_until_ready(speculative._speculative(*args(p, l)))
  with tempfile.TemporaryDirectory() as d:
    jax.profiler.start_trace(d)
    for p, l in rows:
      jax.block_until_ready(speculative._speculative(*args(p, l)))
    jax.profiler.stop_trace()
    events = [e for e in _trace_events(d) if e.get("ph") == "X"]
  starts = sorted(e["ts"] for e in events if e["name"] == loop)
  ends = sorted(e["ts"] for e in events if e["name"] == "end: " + loop)
  windows = list(zip(starts, ends))
  inside = [e for e in events if (e.get("args") or {}).get("hlo_op") and e["name"] != loop
            and not e["name"].startswith(("cond", "conditional", "while", "call"))  # their thunks are listed too
            and any(a < e["ts"] < b for a, b in windows)]
  durs = collections.defaultdict(list)
  for e in inside:
    durs[e["name"]].append(e["dur"] * 1e-6)
  # loop iterations captured: the profiler may miss a call's loop events, so count them from the ops that run
  # once per iteration (the most common execution count)
  blocks = collections.Counter(len(v) for v in durs.values()).most_common(1)[0][0]
  total = collections.Counter()
  count = collections.Counter()
  per_op = {}
  for name, ds in durs.items():
    c = classes.get(name, "other")
    per_op[name] = (c, len(ds), float(np.median(ds)) * len(ds))
    total[c] += per_op[name][2]
    count[c] += len(ds)
  loop_s = sum(b - a for a, b in windows) * 1e-6
  busy_s = sum(e["dur"] for e in inside) * 1e-6
  top = sorted(((n, c, k, t) for n, (c, k, t) in per_op.items() if c == "other"), key=lambda x: -x[3])[:top]
  if os.environ.get("TB_DEBUG"):
    print("events", len(events), "inside", len(inside), "windows", windows[:4],
          collections.Counter(len(v) for v in durs.values()).most_common(8))
  return {"blocks": blocks, "calls": n_calls, "draft_s": total["draft"] / blocks, "verify_s": total["verify"] / blocks,
          "other_s": total["other"] / blocks, "gaps_s": (loop_s - busy_s) / blocks, "loop_s": loop_s / blocks,
          "thunks_per_block": {k: count[k] / blocks for k in ("draft", "verify", "other")},
          "top_other_us_per_block": [[n, round(1e6 * t / blocks, 1)] for n, _, _, t in top]}


# --------------------------------------------------------------------------------------------- pairs


def random_pair(sizes: str, args):
  import jax
  import numpy as np
  from dsrepro.models.transformer import garden_config, make_model
  t_size, d_size = sizes.split("/")
  target = make_model(garden_config(t_size, args.vocab, max_len=args.max_len), seed=0)
  draft = make_model(garden_config(d_size, args.vocab, max_len=args.max_len), seed=1)
  for m in (target, draft):
    m.ln_f.scale[...] = m.ln_f.scale[...] * args.logit_scale
  n = max(args.n_prompts, *args.batches, 1)
  prompts = np.asarray(jax.random.randint(jax.random.key(args.seed), (n, args.prompt_len), 1, args.vocab), np.int32)
  plen = np.full((n,), args.prompt_len, np.int32)
  info = {"weights": f"random, ln_f.scale x {args.logit_scale}", "vocab": args.vocab, "max_len": args.max_len,
          "prompts": f"uniform random tokens, length {args.prompt_len}"}
  return target, draft, prompts, plen, info


def trained_pair(sizes: str, args):
  """The GSM8K SFT pair of benchmarks/vs_transformers.py (its cached runs; trained by a child when missing)."""
  sys.path.insert(0, str(HERE))
  import vs_transformers as vt
  from dsrepro import data, runs, tokenizer
  t_size, d_size = sizes.split("/")
  vt_args = argparse.Namespace(target_size=t_size, draft_size=d_size, target_steps=args.target_steps,
                               draft_steps=args.draft_steps, run_root=args.run_root)
  dirs = vt.run_dirs(vt_args)
  if not all(runs.is_done(d) for d in dirs.values()):
    subprocess.run([sys.executable, str(HERE / "vs_transformers.py"), "--prepare-only", "--target-size", t_size,
                    "--draft-size", d_size, "--target-steps", str(args.target_steps), "--draft-steps",
                    str(args.draft_steps), "--run-root", str(args.run_root)],
                   check=True, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
  tok = tokenizer.load_tokenizer(dirs["tok"] / "tokenizer")
  target, draft = runs.load_model(dirs["target"]), runs.load_model(dirs["draft"])
  n = max(args.n_prompts, *args.batches, 1)
  examples = data.load_task("gsm8k", "test", n)
  prompts, plen = tokenizer.encode_prompts(tok, [e.prompt for e in examples], vt.MAX_PROMPT, pad_to=vt.MAX_PROMPT)
  info = {"weights": f"GSM8K SFT ({args.target_steps} / {args.draft_steps} steps), {dirs['target'].name} / "
          f"{dirs['draft'].name}", "vocab": target.cfg.vocab_size, "max_len": target.cfg.max_len,
          "prompts": f"GSM8K test [:{n}], padded to {vt.MAX_PROMPT} (mean length {float(plen.mean()):.0f})"}
  return target, draft, prompts, plen, info


# ---------------------------------------------------------------------------------------------- bench


def _shaped_loop():
  """The jitted SD-shaped loop: each iteration makes one block's model calls in SD's order, nothing else."""
  import functools
  import jax
  import jax.numpy as jnp
  from jax import lax
  from dsrepro.sd import speculative

  two_token_first = not hasattr(speculative, "_catch_up")  # the code before the catch-up call: 2-token first call

  @functools.partial(jax.jit, static_argnames=("gamma", "calls"))
  def loop(target, draft, t_cache, d_cache, gamma, calls):
    head = target.head_weight() if hasattr(target, "head_weight") else None
    verify = (lambda x, c: target(x, c, head)) if head is not None else target

    def body(i, c):
      t_cache, d_cache, acc = c
      tok = lambda n: jnp.full((1, n), (i + (acc > 0).astype(jnp.int32)) % 2, jnp.int32)  # nothing is hoisted
      if two_token_first:
        logits, d_cache = draft(tok(2), d_cache.rollback(d_cache.end_B - 1))
        acc = acc + jnp.max(logits)
      for _ in range(gamma - 1 if two_token_first else gamma):
        logits, d_cache = draft(tok(1), d_cache)
        acc = acc + jnp.max(logits)
      logits, t_cache = verify(tok(gamma + 1), t_cache)
      return (t_cache.rollback(t_cache.end_B - gamma - 1), d_cache.rollback(d_cache.end_B - gamma),
              acc + jnp.max(logits))
    return lax.fori_loop(0, calls, body, (t_cache, d_cache, jnp.float32(0)))[2]
  return loop


def shaped_block_latency(target, draft, gamma: int, context: int, cache_len: int, calls: int = 8, reps: int = 2,
                         clock=time.perf_counter) -> float:
  """Seconds per block of SD's model calls alone, in SD's order (gamma draft calls, then the verify call), in a
  jitted loop: difference of two loop lengths, fastest of ``reps`` (as evaluate.loop_latency). Against gamma *
  t_draft + t_verify it shows what alternating the models costs (the target's weight stream evicts the draft's
  weights from the CPU caches); against SD's block time, what the SD logic costs."""
  import jax.numpy as jnp
  from dsrepro.models.kvcache import init_cache
  loop = _SHAPED.setdefault("loop", _shaped_loop())
  t_cache = init_cache(target.cfg, 1, cache_len).rollback(jnp.array([context]))
  d_cache = init_cache(draft.cfg, 1, cache_len).rollback(jnp.array([context]))
  t = {}
  for n in (2, 2 + calls):
    loop(target, draft, t_cache, d_cache, gamma, n).block_until_ready()
    t[n] = []
  for _ in range(reps):
    for n in t:
      t0 = clock()
      loop(target, draft, t_cache, d_cache, gamma, n).block_until_ready()
      t[n].append(clock() - t0)
  return max((min(t[2 + calls]) - min(t[2])) / calls, 1e-9)


_SHAPED: dict = {}


def bench_config(target, draft, prompts_NxP, plen_N, T: float, gamma: int, args, key, clock) -> dict:
  import numpy as np
  from dsrepro.sd import evaluate, speculative, theory
  from dsrepro.sd.speculative import SpecConfig
  n, P = args.n_prompts, prompts_NxP.shape[1]
  prompts_NxP, plen_N = prompts_NxP[:n], plen_N[:n]
  N = args.max_new_tokens
  cfg = SpecConfig(gamma=gamma, max_new_tokens=N, temperature=T)
  ctx, cache_len = int(np.mean(plen_N)) + N // 2, P + N + gamma + 1
  load0, traces0 = os.getloadavg()[0], speculative.TRACE_COUNT["speculative"]
  rounds = []
  for _ in range(args.rounds):
    lat = evaluate.latencies(target, draft, gamma, context=ctx, in_loop=True, cache_len=cache_len, reps=2,
                             clock=clock)
    shaped = shaped_block_latency(target, draft, gamma, ctx, cache_len, clock=clock)
    w = evaluate.wall_time_speedup(target, draft, prompts_NxP, plen_N, cfg, key, reps=1, clock=clock)
    pre_p = evaluate.prefill_latency(target, P, P + N, reps=2, clock=clock)
    pre_s = (evaluate.prefill_latency(target, P, cache_len, reps=2, logits=False, clock=clock)
             + evaluate.prefill_latency(draft, P, cache_len, reps=2, logits=False, clock=clock))
    plain_s, sd_s = sum(w["plain_s_N"]), sum(w["sd_s_N"])
    plain_dec, sd_dec = plain_s - n * pre_p, sd_s - n * pre_s
    tok_p, tok_s, blocks = w["tokens_plain"], w["tokens_sd"], w["target_calls"]
    pred = float(theory.predicted_speedup(w["tau"], lat["t_target"], lat["t_draft"], lat["t_verify"], gamma))
    real, real_dec = (plain_s / tok_p) / (sd_s / tok_s), (plain_dec / tok_p) / (sd_dec / tok_s)
    model_calls = gamma * lat["t_draft"] + lat["t_verify"]
    rounds.append({
        **lat, "prefill_s_plain": pre_p, "prefill_s_sd": pre_s, "plain_s_per_token": plain_s / tok_p,
        "sd_s_per_token": sd_s / tok_s, "predicted_speedup": pred, "realized_speedup": real,
        "realized_over_predicted": real / pred, "realized_speedup_decode": real_dec,
        "realized_over_predicted_decode": real_dec / pred,
        "plain_s_per_step_decode": plain_dec / (tok_p - n), "block_s": sd_dec / blocks, "model_calls_s": model_calls,
        "else_s": sd_dec / blocks - model_calls, "shaped_s": shaped, "alternation_s": shaped - model_calls,
        "logic_s": sd_dec / blocks - shaped, "plain_overhead": plain_dec / (tok_p - n) / lat["t_target"] - 1.0,
        "sd_overhead": sd_dec / blocks / model_calls - 1.0,
        "predicted_speedup_shaped": w["tau"] * lat["t_target"] / shaped,
        "realized_over_predicted_shaped_decode": real_dec / (w["tau"] * lat["t_target"] / shaped)})
  med = {k: float(np.median([r[k] for r in rounds])) for k in rounds[0]}
  spread = {k: [float(min(r[k] for r in rounds)), float(max(r[k] for r in rounds))]
            for k in ("realized_over_predicted", "realized_over_predicted_decode", "realized_speedup",
                      "realized_speedup_decode", "predicted_speedup", "block_s", "sd_overhead",
                      "realized_over_predicted_shaped_decode")}
  try:
    trace = trace_breakdown(target, draft, prompts_NxP, plen_N, cfg, key, min(args.trace_prompts, n))
    traced = sum(trace[k] for k in ("draft_s", "verify_s", "other_s", "gaps_s"))
    trace["block_s_split"] = {k: med["block_s"] * trace[k] / traced for k in ("draft_s", "verify_s", "other_s",
                                                                              "gaps_s")}
  except Exception as e:  # the profiler is a diagnostic: a missing plugin must not lose the timings
    trace = {"error": f"{type(e).__name__}: {e}"}
  return {"temperature": T, "gamma": gamma, "context": ctx, "cache_len": cache_len, **med,
          "min_max_over_rounds": spread, "tau": w["tau"], "alpha_hat": w["alpha_hat"], "target_calls": blocks,
          "tokens": tok_s, "trace": trace, "new_traces": speculative.TRACE_COUNT["speculative"] - traces0,
          "loadavg_1m_before_after": [load0, os.getloadavg()[0]], "rounds": rounds}


def bench_batched(target, draft, prompts_NxP, plen_N, T: float, args, key, clock) -> list[dict]:
  import jax
  import numpy as np
  from dsrepro.sd.decode import DecodeConfig, generate
  from dsrepro.sd.speculative import SpecConfig, speculative_generate
  N, G = args.max_new_tokens, args.batch_gamma
  dcfg = DecodeConfig(max_new_tokens=N, temperature=T)
  scfg = SpecConfig(gamma=G, max_new_tokens=N, temperature=T)
  rows = []
  for B in args.batches:
    p, l = prompts_NxP[:B], plen_N[:B]
    run = {"plain": lambda: generate(target, p, l, dcfg, key),
           "sd": lambda: speculative_generate(target, draft, p, l, scfg, key)}
    outs = {k: jax.block_until_ready(f()) for k, f in run.items()}  # compiles
    times = {k: [] for k in run}
    for _ in range(args.rounds):
      for k, f in run.items():
        t0 = clock()
        jax.block_until_ready(f())
        times[k].append(clock() - t0)
    toks = {k: int(np.sum(o.num_B)) for k, o in outs.items()}
    tps = {k: toks[k] / float(np.median(times[k])) for k in run}
    calls = np.asarray(outs["sd"].target_calls_B)
    rows.append({"batch": B, "gamma": G, "tokens_per_s_plain": tps["plain"], "tokens_per_s_sd": tps["sd"],
                 "sd_over_plain": tps["sd"] / tps["plain"], "s_plain": float(np.median(times["plain"])),
                 "s_sd": float(np.median(times["sd"])),
                 "min_max_s": {k: [float(min(v)), float(max(v))] for k, v in times.items()},
                 "sd_loop_blocks": int(calls.max()), "tau_mean_row": float(np.mean(np.asarray(outs["sd"].num_B)
                                                                                    / calls))})
  return rows


def child_argv(args, kind: str, sizes: str, out: Path) -> list[str]:
  """This script's arguments for ONE pair (a child process per pair keeps the compiled programs of the others
  out of memory: one process for all of them ran a 24 GB machine out of memory)."""
  argv = ["--pairs"] + ([sizes] if kind == "random" else []) + ["--trained"] + ([sizes] if kind == "trained" else [])
  for name in ("target_steps", "draft_steps", "run_root", "vocab", "max_len", "prompt_len", "max_new_tokens",
               "logit_scale", "n_prompts", "rounds", "trace_prompts", "batch_gamma", "clock", "seed", "label"):
    argv += [f"--{name.replace('_', '-')}", str(getattr(args, name))]
  for name in ("temperatures", "gammas", "batches", "cpus"):
    if getattr(args, name) is not None:
      argv += [f"--{name}", *map(str, getattr(args, name))]
  if args.src:
    argv += ["--src", str(args.src)]
  return argv + ["--out", str(out), "--one-process"]


def bench(args) -> dict:
  pairs = [("random", s) for s in args.pairs] + [("trained", s) for s in args.trained]
  if len(pairs) > 1 and not args.one_process:
    out = []
    with tempfile.TemporaryDirectory() as d:
      for i, (kind, sizes) in enumerate(pairs):
        part = Path(d) / f"{i}.json"
        subprocess.run([sys.executable, __file__, *child_argv(args, kind, sizes, part)], check=True)
        out += json.loads(part.read_text())["runs"][args.label]["pairs"]
    return {"date": time.strftime("%Y-%m-%d %H:%M:%S"), "src": str(args.src or HERE.parent), "pairs": out}
  import jax
  from dsrepro.models.transformer import count_params
  clock = time.process_time if args.clock == "cpu" else time.perf_counter
  out = []
  for kind, sizes in pairs:
    target, draft, prompts, plen, info = (random_pair if kind == "random" else trained_pair)(sizes, args)
    N = args.max_new_tokens
    if prompts.shape[1] + N + max(args.gammas + [args.batch_gamma]) + 1 > min(target.cfg.max_len, draft.cfg.max_len):
      raise ValueError(f"{sizes}: prompt {prompts.shape[1]} + max_new_tokens {N} + gamma + 1 exceeds max_len")
    key = jax.random.key(args.seed)
    entry = {"pair": sizes, "kind": kind, **info, "target_params": count_params(target),
             "draft_params": count_params(draft), "prompt_width": int(prompts.shape[1]), "max_new_tokens": N,
             "configs": [], "batched": {}}
    for T in args.temperatures:
      for g in args.gammas:
        r = bench_config(target, draft, prompts, plen, T, g, args, jax.random.fold_in(key, g), clock)
        entry["configs"].append(r)
        jax.clear_caches()  # compiled programs of this config: not needed again
        print_row(sizes, kind, r)
      if args.batches:
        entry["batched"][str(T)] = bench_batched(target, draft, prompts, plen, T, args, key, clock)
        jax.clear_caches()
        for b in entry["batched"][str(T)]:
          print(f"  batched {sizes} {kind} T={T:g} B={b['batch']:>3}: plain {b['tokens_per_s_plain']:8.0f} tok/s, "
                f"SD {b['tokens_per_s_sd']:8.0f} tok/s ({b['sd_over_plain']:.2f}x), loop blocks "
                f"{b['sd_loop_blocks']}, mean tau/row {b['tau_mean_row']:.2f}", flush=True)
    out.append(entry)
  return {"date": time.strftime("%Y-%m-%d %H:%M:%S"), "src": str(Path(sys.modules["dsrepro"].__file__).parent),
          "pairs": out}


def print_row(sizes, kind, r):
  tr = r["trace"]
  tr_s = ("trace err" if "error" in tr else
          f"trace d/v/o/gap {1e3 * tr['draft_s']:.2f}/{1e3 * tr['verify_s']:.2f}/{1e3 * tr['other_s']:.2f}/"
          f"{1e3 * tr['gaps_s']:.2f}")
  print(f"{sizes:>11} {kind:7} T={r['temperature']:g} g={r['gamma']} t_d {1e3 * r['t_draft']:.3f} t_t "
        f"{1e3 * r['t_target']:.2f} t_v {1e3 * r['t_verify']:.2f} tau {r['tau']:.2f} pred {r['predicted_speedup']:.2f} "
        f"real {r['realized_speedup']:.2f} r/p {r['realized_over_predicted']:.2f} r/p_dec "
        f"{r['realized_over_predicted_decode']:.2f} block {1e3 * r['block_s']:.2f} = calls "
        f"{1e3 * r['model_calls_s']:.2f} + alternation {1e3 * r['alternation_s']:.2f} + logic "
        f"{1e3 * r['logic_s']:.2f} ms; {tr_s} ms", flush=True)


def comparison(runs: dict) -> list[dict]:
  """Before vs after: per (pair, kind, temperature, gamma) the block time and its parts, realized / predicted;
  then per (pair, kind, temperature, batch) the batched tokens/s."""
  if not {"before", "after"} <= set(runs):
    return []
  index = lambda r: {(p["pair"], p["kind"], c["temperature"], c["gamma"]): c for p in r["pairs"] for c in p["configs"]}
  b, a = index(runs["before"]), index(runs["after"])
  keys = ("block_s", "model_calls_s", "else_s", "shaped_s", "alternation_s", "logic_s", "t_verify", "t_target",
          "plain_s_per_token", "sd_s_per_token",
          "realized_speedup", "realized_speedup_decode", "predicted_speedup", "realized_over_predicted",
          "realized_over_predicted_decode", "realized_over_predicted_shaped_decode", "plain_overhead")
  rows = []
  for k in sorted(set(a) & set(b)):
    row = {"pair": k[0], "kind": k[1], "temperature": k[2], "gamma": k[3]}
    row.update({f"{x}_before": b[k][x] for x in keys})
    row.update({f"{x}_after": a[k][x] for x in keys})
    for w in ("draft_s", "verify_s", "other_s", "gaps_s"):
      row[f"trace_{w}_before"], row[f"trace_{w}_after"] = b[k]["trace"].get(w), a[k]["trace"].get(w)
    rows.append(row)
  batched = lambda r: {(p["pair"], p["kind"], T, x["batch"]): x for p in r["pairs"] for T, xs in p["batched"].items()
                       for x in xs}
  bb, ba = batched(runs["before"]), batched(runs["after"])
  for k in sorted(set(ba) & set(bb)):
    row = {"pair": k[0], "kind": k[1], "temperature": float(k[2]), "batch": k[3], "gamma": ba[k]["gamma"]}
    for x in ("tokens_per_s_plain", "tokens_per_s_sd", "sd_over_plain"):
      row[f"{x}_before"], row[f"{x}_after"] = bb[k][x], ba[k][x]
    rows.append(row)
  return rows


def main(argv=None):
  args = parse_args(argv)
  if args.before_ref:
    argv_ = sys.argv[1:] if argv is None else list(argv)
    i = argv_.index("--before-ref")
    rest = argv_[:i] + argv_[i + 2:]
    with tempfile.TemporaryDirectory() as d:
      root = subprocess.run(["git", "rev-parse", "--show-toplevel"], cwd=HERE, check=True, capture_output=True,
                            text=True).stdout.strip()
      archive = subprocess.run(["git", "archive", args.before_ref, "dsrepro"], cwd=root, check=True,
                               capture_output=True).stdout
      subprocess.run(["tar", "-x", "-C", d], input=archive, check=True)
      subprocess.run([sys.executable, __file__, *rest, "--src", d, "--label", "before"], check=True)
    args.label = "after"
  if args.src:
    sys.path.insert(0, str(args.src.resolve()))
  else:
    sys.path.insert(0, str(HERE.parent))
  if args.cpus:
    os.sched_setaffinity(0, args.cpus)
  import jax
  t0 = time.perf_counter()
  result = bench(args)
  result["seconds"] = time.perf_counter() - t0
  result["argv"] = sys.argv[1:]
  prev = json.loads(args.out.read_text()) if args.out.exists() else {}
  if "runs" not in prev:   # a file from the previous version of this benchmark: start over
    prev = {"runs": {}}
  dev = jax.devices()[0]
  prev.update({
      "jax": jax.__version__, "backend": jax.default_backend(), "device": dev.device_kind,
      "cpu_count": os.cpu_count(), "machine": platform.machine(), "xla_flags": os.environ.get("XLA_FLAGS", ""),
      "cpu_affinity": sorted(os.sched_getaffinity(0)), "batch_1_prompts": args.n_prompts,
      "clock": {"wall": "time.perf_counter (wall time)",
                "cpu": "time.process_time (process CPU time; pinned to one core = wall time on an idle core)"}[
                    args.clock],
      "timing": ("per pair, decoding and gamma: `rounds` rounds of in-loop latencies, batch-1 plain vs SD wall "
                 "times over all prompts, prefill latencies; medians over rounds (min / max in "
                 "min_max_over_rounds); trace = jax.profiler breakdown of SD calls (see the benchmark's docstring)"),
  })
  prev["runs"][args.label] = result
  prev["comparison"] = comparison(prev["runs"])
  args.out.parent.mkdir(parents=True, exist_ok=True)
  args.out.write_text(json.dumps(prev, indent=1) + "\n")
  print(f"wrote {args.out} (runs: {', '.join(prev['runs'])}) in {result['seconds']:.0f} s")


if __name__ == "__main__":
  main()
