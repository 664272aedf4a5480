"""The plan tool (dsrepro.repro.plan) and the public Pythia architecture facts it plans with (hf_config.PYTHIA)."""
import jax
import pytest
import transformers

from dsrepro import sharding
from dsrepro.kd.recipes import ALGORITHMS, KDConfig
from dsrepro.models.hf_config import PYTHIA, PYTHIA_IDS, hf_config_to_model_config, pythia_config
from dsrepro.models.transformer import ModelConfig, count_params
from dsrepro.repro import plan
from dsrepro.repro.profiles import PROFILES, get_profile
from dsrepro.train import TrainConfig

# (total parameters, non-embedding parameters) from the EleutherAI model cards (Pythia, arXiv 2304.01373).
PYTHIA_PARAMS = {"14m": (14_067_712, 1_189_888), "31m": (30_494_720, 4_739_072), "70m": (70_426_624, 18_915_328),
                 "160m": (162_322_944, 85_056_000), "410m": (405_334_016, 302_311_424),
                 "1b": (1_011_781_632, 805_736_448), "1.4b": (1_414_647_808, 1_208_602_624)}


@pytest.mark.parametrize("size", sorted(PYTHIA))
def test_pythia_configs_are_the_published_architectures(size):
  cfg = pythia_config(size)
  total, non_embedding = PYTHIA_PARAMS[size]
  n = count_params(cfg)  # abstract: nothing allocated, even for 1.4B
  assert n == total and n - 2 * cfg.vocab_size * cfg.d_model == non_embedding
  assert (cfg.norm, cfg.mlp, cfg.parallel_residual, cfg.rotary_dim, cfg.tie_embeddings, cfg.max_len) == (
      "layer", "gelu", True, cfg.head_dim // 4, False, 2048)
  hf = transformers.GPTNeoXConfig(**{k: v for k, v in PYTHIA[size].items() if k not in ("architectures",
                                                                                       "model_type")})
  assert hf_config_to_model_config({**hf.to_dict(), "architectures": ["GPTNeoXForCausalLM"]}) == cfg
  assert PYTHIA_IDS[size] == f"EleutherAI/pythia-{size}" and pythia_config(f"pythia-{size}", max_len=512).max_len == 512


TINY = ModelConfig(vocab_size=256, d_model=64, n_layers=4, n_heads=4, d_ff=256, max_len=32)
TINY_T = ModelConfig(vocab_size=256, d_model=96, n_layers=3, n_heads=4, d_ff=384, max_len=32)


@pytest.mark.parametrize("kind", ["sft", "kd", "adaspec"])
def test_depth_extrapolation_matches_the_full_compile(kind):
  tc = TrainConfig(steps=100, batch_size=4, optimizer="adafactor")
  kd = {"sft": None, "kd": ALGORITHMS["gkd"], "adaspec": KDConfig(adaspec_k=0.4)}[kind]
  stage = plan.Stage(kind, TINY, tc, 24, 2, kd, None if kind == "sft" else TINY_T, TINY if kind == "adaspec" else None)
  pl = plan.plan_stage(stage, "h100")
  mesh = sharding.make_mesh(jax.devices()[:1])
  direct = plan._measure(TINY, stage.teacher, stage.ref is not None, kd, tc, 24, mesh, sharding.ShardingRules(), True)
  assert pl.flops_per_step == pytest.approx(direct["flops"], rel=1e-4)   # every layer costs the same
  for k in ("arguments", "outputs", "aliased"):                           # state bytes: exact
    assert getattr(pl.memory, k) == direct[k], k
  assert pl.memory.temporaries == pytest.approx(direct["temporaries"], rel=0.25)
  assert pl.params == count_params(TINY) and pl.fits
  assert (pl.gen_flops_per_step > 0) == (kind == "kd")  # on-policy GKD samples its rows every step
  assert pl.seconds == pytest.approx(2 * 100 * pl.seconds_per_step)


def test_stages_count_the_figures_runs():
  p = get_profile("quick", tasks=("gsm8k", "xsum"), adaspec_tasks=("gsm8k", "alpaca"), fig4_tasks=("gsm8k",))
  by = {s.name: s for s in plan.stages(p)}
  seeds = getattr(p, "kd_seeds", 1)
  assert by["SFT target"].count == by["SFT draft"].count == 3  # gsm8k, xsum, alpaca
  assert by["KD gkd"].count == 3 * seeds and by["KD seqkd"].count == 2 * seeds
  assert by["AdaSPEC draft (k=0.4)"].ref == by["AdaSPEC draft (k=0.4)"].model
  assert by["AdaSPEC draft (k=0.4)"].count == 2 * seeds and "AdaSPEC reference" not in by  # = SupervisedKD's run
  assert by["KD supervised_kd"].count == 3 * seeds  # Fig. 2 on gsm8k, xsum; AdaSPEC's reference on alpaca
  assert sum(s.count for n, s in by.items() if n.startswith("Fig.4")) == 16 + 4 * 1 * (seeds - 1)
  assert by["Fig.4 grid teacher"].train.steps == p.kd_grid_steps and by["KD gkd"].train.steps == p.kd.steps
  assert by[f"Fig.6 {p.garden[0]} <- {p.garden[-1]}"].teacher == plan.model_config(p, p.garden[-1])
  assert plan.model_config(p, "pythia-31m") == pythia_config("31m", max_len=by["KD gkd"].model.max_len)


def test_every_profile_has_stages_of_known_models():
  for name, p in PROFILES.items():
    st = plan.stages(p)
    assert st and all(s.count >= 1 and s.train.steps >= 1 and s.seq_len >= 1 for s in st), name
    assert {s.model for s in st} <= {plan.model_config(p, size) for size in (p.target_size, p.draft_size, *p.garden)}


@pytest.mark.slow
@pytest.mark.parametrize("name", ["cpu", "pythia"])  # a garden profile and the HF (Pythia) one; the same code
def test_plan_runs_end_to_end(name, capsys):       # path plans the others (every profile's stages: above)
  plans = plan.main(["--profile", name, "--device", "a100", "--no-compile"])  # lowered only (seconds)
  assert plans and all(pl.flops_per_step > 0 and pl.params > 0 and pl.seconds > 0 for pl in plans)
  out = capsys.readouterr().out
  assert f"plan: profile {name} on 1 x NVIDIA A100" in out and "| stage | runs |" in out and "total:" in out
  assert out.count("\n| ") == len(plans) + 1


def test_devices_and_cli_errors(capsys):
  cpu = plan.device_spec("cpu")
  assert cpu.fp32_flops > 1e8 and cpu.memory_bytes > 1e9 and cpu.shared_host
  with pytest.raises(ValueError, match="unknown device 'tpu9'"):
    plan.device_spec("tpu9")
  assert {d.source != "" for d in plan.DEVICES.values()} == {True}
  stage = plan.Stage("x", TINY, TrainConfig(steps=1, batch_size=3), 24)
  with pytest.raises(ValueError, match="needs 64 visible devices"):
    plan.plan_stage(stage, "v5e", 64)
  with pytest.raises(ValueError, match="--devices must be >= 1"):
    plan.main(["--profile", "smoke", "--devices", "0"])


@pytest.mark.slow
def test_plan_forces_host_devices_for_more_devices(capfd):
  plan.main(["--profile", "smoke", "--device", "v5e", "--devices", "8", "--no-compile"])
  out = capfd.readouterr().out
  assert "plan: profile smoke on 8 x Google Cloud TPU v5e (1 chip), params FSDP over 8, utilisation 40%" in out
