"""A new method is one registration (issue #36): its own knob and per-step state reach the training config, the
CLI, the token rule and a real training run, and the method appears in the study's arms, Fig 5 and the colours."""

import json

import pytest
import torch
from conftest import TINY, TINY_ROLLOUTS, sandbox_recipe

NAME = "hicra_probe"
RUN = sandbox_recipe(**TINY_ROLLOUTS, val_every=0, save_steps=10)


class StepCounter:
    """The probe's per-step state: the steps it was told about, and its knob as the config gave it."""

    made: list = []

    def __init__(self, cfg):
        self.steps, self.boost = [], cfg.knob("probe_boost")
        StepCounter.made.append(self)

    def update(self, line: dict) -> None:
        if line.get("step"):
            self.steps.append(line["step"])

    def state(self) -> dict:
        return {"probe_steps_seen": len(self.steps)}


@pytest.fixture
def probe():
    """Registers the probe method in one call (its rule, colour, knob, per-step state, study arm and Fig 5 entry);
    the registry is left as it was afterwards."""
    from hicra.method.advantage import REGISTRY, hicra_advantages, register
    from hicra.method.knobs import Knob

    boost = Knob("probe_boost", float, 1.5, "probe: alpha multiplier", lambda v, cfg: v > 0, "a number > 0")
    seen = []

    @register(NAME, "#abcdef", needs_sg=True, knobs=(boost,), state=StepCounter, study_seeds=3, fig5=True)
    def _rule(A, plan, cm, gate, ctx):
        seen.append({k: ctx.get(k) for k in ("alpha", "probe_boost", "probe_steps_seen")})
        return hicra_advantages(A, plan, ctx["alpha"] * ctx["probe_boost"]), plan & torch.as_tensor(cm).bool()

    StepCounter.made.clear()
    try:
        yield seen
    finally:
        REGISTRY.pop(NAME, None)


def test_the_knob_is_a_config_field_a_recipe_key_and_a_flag(probe, tmp_path):
    from hicra.train import Recipe, read_recipe, train_help
    from hicra.training.trainer import HICRAConfig

    cfg = HICRAConfig(output_dir=str(tmp_path), method=NAME, sg_file="x.json", use_cpu=True, report_to=[])
    assert cfg.knob("probe_boost") == 1.5 and cfg.method_knobs() == {"probe_boost": 1.5}  # its declared default
    with pytest.raises(ValueError, match="probe_boost must be a number > 0; got -1"):
        HICRAConfig(output_dir=str(tmp_path), method=NAME, sg_file="x.json", use_cpu=True, knobs={"probe_boost": -1})
    r = Recipe.parse(read_recipe("configs/sandbox.yaml", ["--method", NAME, "--probe_boost", "2"]))
    assert r.kw["method"] == NAME and r.kw["knobs"] == {"probe_boost": 2.0}  # typed by the knob: a float
    assert "--probe_boost" in train_help()


def test_the_knob_and_the_state_reach_a_real_run(probe, tiny_sandbox):
    from hicra.train import build_trainer

    data = {"run_dir": str(tiny_sandbox / "run"), "max_steps": 2, "sandbox": TINY, **RUN}
    trainer, _ = build_trainer({**data, "method": NAME, "probe_boost": 2.0})
    trainer.train()
    lines = [json.loads(x) for x in open(tiny_sandbox / "run" / "metrics.jsonl")]
    assert [x["step"] for x in lines] == [1, 2]
    (state,) = StepCounter.made
    assert state.boost == 2.0 and state.steps == [1, 2]  # updated by the trainer after each step
    assert [x["probe_steps_seen"] for x in lines] == [0, 1]  # logged: the state each step used
    assert all(x["alpha"] == 0.2 and 0 <= x["boosted_ratio"] <= 1 for x in lines)
    assert probe and all(c["probe_boost"] == 2.0 and c["alpha"] == 0.2 for c in probe)  # the rule's ctx
    assert [c["probe_steps_seen"] for c in probe] == [0, 1]


def test_the_method_is_a_study_arm_a_fig5_method_and_has_its_colour(probe):
    from hicra import study
    from hicra.method import methods
    from hicra.stepkit.plotting import PALETTE

    assert methods.study_arms()[NAME] == 3 and methods.study_arms()["grpo"] == 10
    steps = study.study_profile("runs/x", steps=5)
    assert {f"train-{NAME}-s{i}" for i in range(3)} <= {s.name for s in steps}
    assert NAME in methods.fig5_methods() and methods.fig5_methods()[:4] == (
        "grpo",
        "hicra",
        "entropy_reg",
        "fork_tokens",
    )
    assert PALETTE[NAME] == "#abcdef"


def test_without_the_probe_the_lists_are_the_shipped_ones():
    """The derived lists equal the hand-kept ones they replaced (the study's default arms, Fig 5's methods)."""
    from hicra.method import methods

    assert methods.study_arms() == {
        "grpo": 10,
        "hicra": 10,
        "hicra_gated": 5,
        "hicra_verl": 5,
        "hicra_adaptive": 5,
        "hicra_pr4997": 5,
    }
    assert methods.fig5_methods() == ("grpo", "hicra", "entropy_reg", "fork_tokens")
    assert NAME not in methods.REGISTRY


def test_the_docs_method_table_is_the_registrys():
    from pathlib import Path

    from hicra.method.methods import method_table

    docs = (Path(__file__).resolve().parents[1] / "docs" / "training.md").read_text()
    for row in method_table().splitlines():
        assert row in docs, row


@pytest.mark.parametrize(
    "method, flags, quantile, coef",
    [
        ("fork_tokens", [], 0.2, 0.0),  # the method's loss setting, where the recipe leaves it unset
        ("fork_tokens", ["--top_entropy_quantile", "1.0"], 1.0, 0.0),  # given, even TRL's default: trained with it
        ("entropy_reg", [], 1.0, 0.005),
        ("entropy_reg", ["--entropy_coef", "0.0"], 1.0, 0.0),
        ("hicra", [], 1.0, 0.0),
    ],
)
def test_a_loss_setting_the_recipe_gives_is_the_one_trained_with(method, flags, quantile, coef):
    """A method's loss settings fill only what the recipe leaves unset: a value the recipe gives is the one trained
    with and the one params.json records (fork_tokens with top_entropy_quantile 1.0 used to train with 0.2)."""
    from hicra.train import Recipe, read_recipe

    args = Recipe.parse(read_recipe("configs/sandbox.yaml", ["--method", method, *flags])).args
    assert (args.top_entropy_quantile, args.entropy_coef) == (quantile, coef)


def test_a_method_may_set_only_the_fields_left_to_it(monkeypatch):
    """A registered method whose loss names another TRL field is refused when its config is made, naming the ones
    it may set (the recipe's value of any other field is never replaced behind its back)."""
    import dataclasses

    from hicra.method import methods
    from hicra.training.train_config import HICRAConfig

    monkeypatch.setitem(
        methods.REGISTRY, "grpo", dataclasses.replace(methods.REGISTRY["grpo"], loss={"temperature": 0.5})
    )
    with pytest.raises(ValueError, match=r"sets \['temperature'\] in its loss; a method may set only"):
        HICRAConfig(output_dir="runs/x", method="grpo", use_cpu=True)
