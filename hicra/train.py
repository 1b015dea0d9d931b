"""RL training step: GRPO / HICRA / entropy_reg / fork_tokens on TRL (paper §3-§4).

One YAML recipe drives the notebook (``notebooks/02_train.ipynb``), the CLI and
multi-GPU runs. Keys of ``TrainScript`` pick the model, data and run folder;
every other key is a field of ``HICRAConfig`` (TRL's GRPOConfig + method).

    python -m hicra.train configs/sandbox.yaml --method hicra --seed 1
    accelerate launch -m hicra.train configs/qwen3_4b_base.yaml
    accelerate launch --config_file configs/accelerate/cpu_2proc.yaml -m hicra.train configs/sandbox.yaml  # 2 CPU
    python -m hicra.train configs/qwen3_4b_base.yaml --dry_run true   # validate only, no download

Writes ``<run_dir>/metrics.jsonl`` (one line per step), ``rollouts/step_*.parquet``,
checkpoints, and prints one JSON line last: ``run_dir``, ``steps``, ``final_val_accuracy``.
Launched as several processes, rank 0 owns the run folder (lock, params, metrics, rollouts, summary line);
every rank trains on its share of each step's prompts (``hicra.training.trainer``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import functools
import json
import os
import sys
import typing
from importlib.metadata import PackageNotFoundError, requires, version
from pathlib import Path

import torch
import yaml
from packaging.requirements import Requirement

from hicra import environment
from hicra.data import check_dataset, load_benchmark
from hicra.method.methods import all_knobs
from hicra.models import check_model_name, load_model
from hicra.sandbox import rl as sandbox_rl
from hicra.sandbox.build import SandboxConfig, build, build_apart, load, model_dir
from hicra.sandbox.rl import grpo_dataset, validator
from hicra.stepkit.cli import bool_fields, coerce, config_help, config_path, did_you_mean, from_dict, split_flags, typed
from hicra.stepkit.steps import StepConfig, emit, install_signal_handlers
from hicra.store.io import read_metrics, read_yaml_mapping, write_json
from hicra.store.paths import resolve
from hicra.store.runfolder import RunFolderError, claim, last_complete_checkpoint
from hicra.store.sgfile import SGFileError, read_sg_file
from hicra.training.ranges import check_temperature
from hicra.training.resume import check_resume
from hicra.training.rewards import TRAIN_INSTRUCTION, accuracy_reward
from hicra.training.trainer import HICRAConfig, HICRATrainer, NonFiniteError


@dataclasses.dataclass
class TrainScript:
    """What to train on; the rest of a recipe configures ``HICRAConfig``."""

    model: str = "sandbox"  # "sandbox" (cached sandbox build), "smollm2", a hub id or a local path
    dataset: str = "sandbox"  # "sandbox", or a shipped/hub math set (hicra.data)
    run_dir: str = "runs/train"  # the run's folder: metrics.jsonl, rollouts/, checkpoints, final/
    sandbox_seed: int = 0  # which sandbox build (its seed)
    sandbox: dict = dataclasses.field(default_factory=dict)  # SandboxConfig overrides (e.g. a tiny model)
    n_train: int = 2000  # training prompts
    val_n: int = 100  # validation problems (sandbox; capped by the world's val split)
    val_k: int = 1  # samples per validation problem (avg@k)
    val_temperature: float = 1.0  # sampling temperature of validation
    lora_r: int = 0  # >0: train LoRA adapters (peft); final/ then holds the adapter
    merge_lora: bool = False  # with lora_r: also save the merged full model in final-merged/
    resume: bool = False  # continue from the newest complete checkpoint in run_dir
    overwrite: bool = False  # start afresh in a run_dir that holds a run (its files are moved aside)
    dry_run: bool = False  # validate the recipe, load nothing
    torch_threads: int = 0  # >0: torch's thread count for this run (the profiles set it); 0: OMP_NUM_THREADS's

    def __post_init__(self):
        for name in ("n_train", "val_n", "val_k"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1; got {getattr(self, name)}")
        if not (isinstance(self.torch_threads, int) and self.torch_threads >= 0):
            raise ValueError(f"torch_threads must be an integer >= 0 (0: OMP_NUM_THREADS's); got {self.torch_threads}")
        if self.lora_r < 0:
            raise ValueError(f"lora_r must be >= 0 (0: full fine-tuning); got {self.lora_r}")

        check_temperature("val_temperature", self.val_temperature)


DEFAULT_RECIPE = "configs/sandbox.yaml"  # `python -m hicra.train` with no recipe file trains with this one


# old recipe keys and flags, still accepted with a one-line notice: each is now TRL's own field
RENAMED = {"entropy_bonus": "entropy_coef", "fork_quantile": "top_entropy_quantile"}


def renamed(data: dict) -> dict:
    """``data`` with each old key (``RENAMED``) under its new name, said once on stderr; both names given: refused."""
    out = dict(data)
    for old, new in RENAMED.items():
        if old in out:
            if new in out:
                raise ValueError(f"{old} and {new} are both given: {old} is the old name of {new}; keep {new} only")
            print(f"[hicra] {old} is deprecated: it is TRL's {new} now (use --{new})", file=sys.stderr, flush=True)
            out[new] = out.pop(old)
    return out


def _typed(data: dict) -> dict:
    """``data``'s values typed by their TrainScript / HICRAConfig field, or by their method knob's type."""
    data = typed(HICRAConfig, typed(TrainScript, renamed(data)))
    knobs = all_knobs()
    return {k: coerce(k, v, knobs[k].type) if k in knobs and k not in CONFIG_KEYS else v for k, v in data.items()}


CONFIG_KEYS = {f.name for f in dataclasses.fields(HICRAConfig)}
CONFIG_DEFAULTS = {f.name: f.default for f in dataclasses.fields(HICRAConfig) if f.default is not dataclasses.MISSING}
CPU_CHECK = {"bf16": False, "use_cpu": True, "use_vllm": False}  # a GPU recipe's device settings, checked on a CPU
SCRIPT_KEYS = {f.name for f in dataclasses.fields(TrainScript)}


def split_recipe(data: dict):
    """YAML mapping -> (TrainScript, HICRAConfig kwargs with ``output_dir`` filled in); unknown keys fail with the
    valid ones listed. A knob of a method registered outside hicra.method.methods goes to ``knobs``. Nothing else is
    filled in: a recipe file (configs/sandbox.yaml) is the whole configuration."""

    data = _typed(data)
    extra = set(all_knobs()) - CONFIG_KEYS
    unknown = sorted(set(data) - SCRIPT_KEYS - CONFIG_KEYS - extra)
    if unknown:
        raise ValueError(
            f"unknown recipe key(s) {unknown}{did_you_mean(unknown, SCRIPT_KEYS | CONFIG_KEYS | extra)}: not "
            f"TrainScript ({sorted(SCRIPT_KEYS)}) nor HICRAConfig fields nor a method's knobs (python -m hicra.train "
            f"--help lists them)"
        )
    script = TrainScript(**{k: v for k, v in data.items() if k in SCRIPT_KEYS})
    kw = {k: v for k, v in data.items() if k in CONFIG_KEYS}  # the recipe is the whole configuration
    if extra & set(data):
        kw["knobs"] = {**kw.get("knobs", {}), **{k: data[k] for k in extra & set(data)}}
    kw.setdefault("output_dir", str(resolve(script.run_dir)))
    return script, kw


@dataclasses.dataclass(frozen=True)
class Recipe:
    """A recipe parsed once (``Recipe.parse``) and passed down: the mapping as given (``data``: params.json records
    it), its ``TrainScript`` and its ``HICRAConfig`` keyword arguments (``kw``). The dry run, the resume checks and
    the trainer read these; none parses the mapping again."""

    data: dict
    script: TrainScript
    kw: dict

    @classmethod
    def parse(cls, data) -> Recipe:
        """``data`` parsed (``split_recipe``), or ``data`` itself when it is a ``Recipe`` already. A sandbox recipe
        without ``sg_file`` gets its build's SG file (the build writes it: ``<model_dir>/grams.json``)."""
        if isinstance(data, Recipe):
            return data
        script, kw = split_recipe(data)
        if script.model == "sandbox" and not kw.get("sg_file"):
            kw["sg_file"] = str(model_dir(sandbox_config(script)) / "grams.json")
        return cls(dict(data), script, kw)

    @functools.cached_property
    def args(self) -> HICRAConfig:
        """The run's ``HICRAConfig``, built once: the dry run checks this object and the trainer trains with it.
        Building it forms accelerate's process group, which sets a torch thread count of its own where
        ``OMP_NUM_THREADS`` is unset (a CPU group); the recipe's ``torch_threads`` is set after it, and wins."""
        args = _distributed_args(HICRAConfig(**self.kw))
        if self.script.torch_threads:
            torch.set_num_threads(self.script.torch_threads)
        return args


def sandbox_config(script: TrainScript) -> SandboxConfig:
    """The sandbox build a recipe trains on: ``sandbox_seed`` and the ``sandbox`` overrides."""
    if not isinstance(script.sandbox, dict):
        raise ValueError(f"sandbox must be a mapping of SandboxConfig options; got {script.sandbox!r}")
    return from_dict(SandboxConfig, {"seed": script.sandbox_seed, **script.sandbox})


def read_recipe(path: str | None, overrides: list[str]) -> dict:
    """Recipe YAML <- ``--key value`` flags, every value typed by its TrainScript / HICRAConfig field."""

    data = read_yaml_mapping(resolve(path)) if path else {}
    bools = bool_fields(TrainScript, HICRAConfig) | {k.name for k in all_knobs().values() if k.type is bool}
    for key, val in split_flags(overrides, bools):
        try:
            data[key] = yaml.safe_load(val)
        except yaml.YAMLError:
            data[key] = val
    return _typed(data)


# Notebook 02's shortcuts: recipe keys its parameters cell names (``papermill ... -p seed 3``), each None by default:
# the recipe's value. Each is declared once, in TrainScript or HICRAConfig, and TrainStepConfig takes its type from
# there (``_shortcut``), so a notebook repeats no recipe field and no default.
SHORTCUTS = ("method", "seed", "max_steps", "val_every", "val_n", "sandbox", "resume", "overwrite")


@dataclasses.dataclass
class _TrainStep(StepConfig):
    run_dir: str = "runs/demo/train-hicra-s0"  # the notebook's run folder (under runs/: stepping through it
    # rewrites nothing committed); the recipe's run_dir is for the CLI
    recipe: str = DEFAULT_RECIPE  # the YAML recipe (configs/)
    overrides: dict = dataclasses.field(
        default_factory=dict, metadata={"help": 'any other TrainScript / HICRAConfig key, e.g. {"learning_rate": 1e-4}'}
    )


def _shortcut(name: str) -> tuple:
    tp = typing.get_type_hints(TrainScript if name in SCRIPT_KEYS else HICRAConfig)[name]
    return name, tp | None, dataclasses.field(default=None, metadata={"help": f"the recipe's {name} (None: its value)"})


TrainStepConfig = dataclasses.make_dataclass(
    "TrainStepConfig",
    [_shortcut(name) for name in SHORTCUTS],
    bases=(_TrainStep,),
    namespace={
        "__module__": __name__,
        "__doc__": """Notebook 02's parameters: a recipe file, the run folder, the recipe keys of ``SHORTCUTS`` (None
    keeps the recipe's value), then ``overrides`` of any other recipe key. ``run_step`` turns it into the recipe
    mapping that ``python -m hicra.train RECIPE --key value ...`` builds, and trains with the same ``run``.""",
    },
)


def run_step(cfg) -> dict:
    """Notebook 02's step: the recipe mapping of ``cfg`` (a ``TrainStepConfig``) trained by ``run`` (the CLI's)."""
    return run(recipe_from_params(dataclasses.asdict(cfg)), cfg.recipe)


def recipe_from_params(p: dict) -> dict:
    """Notebook 02's parameters (its ``globals()``) -> a recipe mapping: the recipe file, then each shortcut given
    (``None`` keeps the recipe's value), the run folder, then ``overrides``."""
    data = read_recipe(p.get("recipe") or DEFAULT_RECIPE, [])
    data.update(
        {k: p[k] for k in SHORTCUTS if p.get(k) is not None}, run_dir=p["run_dir"], **(p.get("overrides") or {})
    )
    return data


def build_trainer(data: dict | Recipe):
    """(trainer, script) from a recipe (a mapping, or one parsed already); the sandbox build gives the SG file."""

    recipe = Recipe.parse(data)
    script, args = recipe.script, recipe.args
    validate = None
    if script.model == "sandbox":
        scfg = sandbox_config(script)
        with args.main_process_first(desc="sandbox build"):  # one process builds, the others then read it
            info = build_apart(scfg) if args.world_size > 1 else build(scfg)
        model, tok = load(info["model_dir"])
        train_ds = grpo_dataset(scfg, script.n_train)
        rewards = [sandbox_rl.sandbox_reward]  # read at build time: a test or a script may swap the reward
        validate = validator(
            scfg,
            script.val_n,
            script.val_temperature,
            args.max_completion_length,
            k=script.val_k,
            warm_dir=None if script.lora_r else info["model_dir"],
        )  # LoRA: its own step 0
    else:
        model, tok = load_model(script.model)
        import datasets

        rows = load_benchmark(script.dataset, split="train", limit=script.n_train)
        train_ds = datasets.Dataset.from_list(
            [
                {"prompt": [{"role": "user", "content": r["problem"] + TRAIN_INSTRUCTION}], "answer": r["answer"]}
                for r in rows
            ]
        )
        rewards = [accuracy_reward]
    peft_config = None
    if script.lora_r:
        from peft import LoraConfig

        peft_config = LoraConfig(
            r=script.lora_r, lora_alpha=2 * script.lora_r, target_modules="all-linear", task_type="CAUSAL_LM"
        )
    trainer = HICRATrainer(
        model=model,
        reward_funcs=rewards,
        args=args,
        train_dataset=train_ds,
        processing_class=tok,
        peft_config=peft_config,
        validate=validate,
    )
    return trainer, script


def is_main_process() -> bool:
    """Global rank 0 of a launched job (``RANK``, set by torchrun / accelerate launch), or a lone process: the
    one that claims the run folder, writes params.json and summary.json and prints the summary line."""
    return int(os.environ.get("RANK", "0")) == 0


def _distributed_args(args):
    """Refuse a launch whose processes did not form one process group: each would train alone, on the same
    run folder. (accelerate forms a CPU group only when the recipe says ``use_cpu: true``.)"""
    launched = int(os.environ.get("WORLD_SIZE", "1"))
    if launched > 1 and args.world_size != launched:
        raise ValueError(
            f"{launched} processes were launched but they formed a group of {args.world_size}: on a "
            "machine without GPU set use_cpu: true in the recipe (or --use_cpu true), and launch with "
            "configs/accelerate/cpu_2proc.yaml (accelerate's MULTI_CPU type starts one process)"
        )
    return args


def check_stack(use_vllm: bool = False, installed: dict | None = None) -> dict:
    """Installed torch / transformers / trl / vllm against the ranges declared upstream: hicra's own requirements
    (pyproject.toml) and TRL's ``vllm`` extra (TRL 1.16: vllm 0.22-0.31). Returns the versions; a version
    outside its range, or ``use_vllm`` without vllm, is a ValueError that names the fix."""

    def ver(name):
        try:
            return version(name)
        except PackageNotFoundError:
            return None

    have = installed or {p: ver(p) for p in ("torch", "transformers", "trl", "vllm")}
    wanted = [Requirement(r) for r in (requires("hicra") or []) if ";" not in r]
    wanted += [Requirement(r.split(";")[0]) for r in (requires("trl") or []) if r.startswith("vllm")]
    bad = [
        f"{q.name} {have[q.name]} (needs {q.specifier})"
        for q in wanted
        if have.get(q.name) and not q.specifier.contains(have[q.name], prereleases=True)
    ]
    if use_vllm and not have.get("vllm"):
        bad.append("use_vllm is set but vllm is not installed (pip install 'trl[vllm]==1.16.*', see environment.yml)")
    if bad:
        raise ValueError("incompatible stack: " + "; ".join(bad) + ". environment.yml pins a combination TRL supports")
    return {k: v for k, v in have.items() if v}


def dry_run(data: dict | Recipe) -> dict:
    """Validate a recipe (a mapping, or one parsed already) without loading a model: keys, method, SG file."""

    recipe = Recipe.parse(data)
    script, kw = recipe.script, recipe.kw
    if recipe.data.get("sg_file"):  # given; a sandbox build writes its own
        read_sg_file(resolve(kw["sg_file"]))

    check_dataset(script.dataset, script.model)  # a typo, or a dataset the sandbox model would ignore
    if script.model != "sandbox":
        check_model_name(script.model)  # a model path that does not exist: one line, not the hub's error
    hardware_checked = torch.cuda.is_available()
    stack = check_stack(use_vllm=bool(kw.get("use_vllm")) and hardware_checked)
    aside = {}
    try:
        args = recipe.args  # the object the trainer trains with
    except ValueError:
        aside = {k: v for k, v in CPU_CHECK.items() if kw.get(k, CONFIG_DEFAULTS[k]) != v}
        if hardware_checked or not aside:
            raise
        # a GPU recipe validated on a CPU machine: its device settings set aside, for this check only (the dry run
        # says which; the real run here fails on them before it touches its folder)
        args = HICRAConfig(**{**kw, **aside})
    return {
        "ok": True,
        "hardware_checked": hardware_checked,
        **({"set_aside_for_this_check": sorted(aside)} if aside else {}),  # settings this machine cannot train with
        "stack": stack,
        "model": script.model,
        "dataset": script.dataset,
        "method": args.method,
        "max_steps": args.max_steps,
        "num_generations": args.num_generations,
    }


# settings that may change when a run is resumed: how long it runs, how often it saves or validates, where it
# logs; every other setting (method, seed, alpha, lr, batch, model, world, ...) defines the run
RESUMABLE_CHANGES = {
    "resume",
    "overwrite",
    "dry_run",
    "max_steps",
    "save_steps",
    "save_total_limit",
    "val_every",
    "save_rollouts",
    "report_to",
    "disable_tqdm",
    "logging_steps",
    "logging_dir",
    "run_name",
    "output_dir",
    "run_dir",
    "use_cpu",
    "ddp_find_unused_parameters",
    "dataloader_num_workers",
    "torch_threads",  # recorded in the environment (and under resumed_in when a resume changes it)
}


RECORD_KEYS = ("recipe", "processes", "environment", "resumed_in")  # what params.json records beside the recipe


def _environment(run_dir: Path) -> dict:
    """params.json's record of where the run computes: this process's environment, or, on a resume, the one the run
    started in, with each other environment it was resumed in listed under ``resumed_in`` (and said)."""
    now = environment.record()
    f = run_dir / "params.json"
    before = json.loads(f.read_text()) if f.exists() else {}
    first = before.get("environment")
    if not first:
        return {"environment": now}
    resumed = list(before.get("resumed_in", []))
    if first.get("key") != now["key"]:
        print(f"[hicra] resuming in another environment: {'; '.join(environment.differences(first, now))}", flush=True)
        resumed.append(now)
    return {"environment": first, **({"resumed_in": resumed} if resumed else {})}


def require_same_run(before: dict, now: dict | Recipe, run_dir) -> None:
    """Refuse to resume ``run_dir`` with settings that define a different run (a hybrid run: metrics of two
    methods in one file); the message names each difference. ``before`` is the run's params.json."""

    norm = lambda v: json.loads(json.dumps(False if v is None else v, default=str))  # noqa: E731  (None: unset)

    def effective(d):  # every defining key, its value as given or by default, JSON-normalised
        r = d if isinstance(d, Recipe) else Recipe.parse({k: v for k, v in d.items() if k not in RECORD_KEYS})
        script, kw = r.script, r.kw
        eff = {**CONFIG_DEFAULTS, **{f.name: getattr(script, f.name) for f in dataclasses.fields(TrainScript)}, **kw}
        return {k: norm(v) for k, v in eff.items() if k not in RESUMABLE_CHANGES}

    old, new = effective(before), effective(now)
    diff = [f"{k} {old.get(k)!r} -> {new.get(k)!r}" for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]
    if diff:
        raise RunFolderError(
            f"--resume true would continue {run_dir} with other settings: {'; '.join(diff)}. A run "
            f"is one set of settings: resume with the ones it started with (its params.json), or "
            f"start a new run (another --run_dir, or --overwrite true to set this one aside)"
        )


def run(data: dict | Recipe, recipe: str | None = None, checked: bool = False) -> dict:
    """Train from a recipe mapping; the one function behind the CLI and notebook 02.

    Claims the run folder (hicra.store.runfolder: a lock, no silent replacement of an earlier run),
    resumes from the newest complete checkpoint when ``resume`` is set, and writes
    ``params.json``, ``metrics.jsonl``, rollouts, checkpoints, ``final/`` and ``summary.json``.
    Resuming a finished run changes nothing and returns its summary."""

    parsed = Recipe.parse(data)  # the one parse of this run's recipe
    data, script, kw = parsed.data, parsed.script, parsed.kw
    if not checked:  # a bad recipe fails here, with the dry run's message, before the folder is touched
        dry_run(parsed)
        parsed.args  # noqa: B018  (the config trained with; a GPU recipe on a CPU fails here)
    run_dir = Path(kw["output_dir"])
    done = run_dir / "summary.json"
    prev = json.loads(done.read_text()) if script.resume and done.exists() else {}
    finished = prev.get("steps", 0) >= kw.get("max_steps", 0) > 0
    ckpt = last_complete_checkpoint(run_dir) if script.resume and not finished else None
    if script.resume:  # the same run, checked against its own record (hicra.training.resume), or refused
        check_resume(run_dir, parsed, ckpt, require_same_run)
    if script.resume and not finished and ckpt is None:
        print(f"[hicra] --resume true, but {run_dir} has no complete checkpoint: starting fresh", flush=True)
    main = is_main_process()  # in a launched job only rank 0 claims and writes the folder's own files
    with (
        claim(run_dir, resume=finished or ckpt is not None, overwrite=script.overwrite or script.resume)
        if main
        else contextlib.nullcontext()
    ):
        if finished:
            print(f"[hicra] {run_dir} already finished {prev['steps']} steps: nothing to do", flush=True)
            return {**prev, **_protocol(script)}  # the same run (check_resume): its validation protocol
        if ckpt is not None:
            print(f"[hicra] resuming from {ckpt}", flush=True)
        trainer, script = build_trainer(parsed)  # parsed.args: built once (torch's threads set with it)
        if main:
            write_json(
                run_dir / "params.json",
                {
                    "recipe": recipe,
                    **{RENAMED.get(k, k): v for k, v in data.items()},  # an old key under TRL's name (said above)
                    "method": trainer.args.method,
                    "hicra_alpha": trainer.args.hicra_alpha,  # the run's alpha, read back by hicra.runinfo
                    "seed": trainer.args.seed,
                    "processes": trainer.args.world_size,
                    **_environment(run_dir),  # versions, threads, CPU, commit: what the numbers depend on
                },
            )
        trainer.train(resume_from_checkpoint=str(ckpt) if ckpt is not None else None)
        trainer.save_model(str(run_dir / "final"))
        if not main:
            return {"run_dir": str(run_dir), "steps": trainer.state.global_step}
        if script.lora_r and script.merge_lora:
            merged = trainer.model.merge_and_unload()
            merged.save_pretrained(str(run_dir / "final-merged"))
            trainer.processing_class.save_pretrained(str(run_dir / "final-merged"))
        lines = read_metrics(run_dir / "metrics.jsonl") if (run_dir / "metrics.jsonl").exists() else []
        vals = [x["val_accuracy"] for x in lines if x.get("val_accuracy") is not None]
        summary = {
            "run_dir": str(run_dir),
            "method": trainer.args.method,
            "seed": trainer.args.seed,
            "steps": trainer.state.global_step,
            "final_val_accuracy": vals[-1] if vals else None,
            **_protocol(script),
        }
        write_json(done, summary)
    return summary


def _protocol(script: TrainScript) -> dict:
    """How ``final_val_accuracy`` was measured: avg@``val_k`` at ``val_temperature`` (notebook 02 labels its axis
    with it)."""
    return {"val_k": script.val_k, "val_temperature": script.val_temperature}


def main(argv=None):
    install_signal_handlers()
    argv = list(sys.argv[1:] if argv is None else argv)
    if "-h" in argv or "--help" in argv:  # every key a recipe may hold: TrainScript's, then HICRAConfig's (TRL's too)
        print(train_help())
        return

    try:  # a recipe a user can fix gets one line that says what to fix, not a traceback
        path = config_path(argv) or DEFAULT_RECIPE  # no recipe: the CPU default
        data = Recipe.parse(read_recipe(path, argv))  # parsed once, passed down
        checked = dry_run(data)  # the real run is checked exactly as the dry run is
        if data.script.dry_run:
            emit(checked)
            return
        data.args  # noqa: B018  (built here, before any folder is touched: a recipe this machine cannot train, a GPU
        # recipe on a CPU, fails in one line)
    except (ValueError, FileNotFoundError, SGFileError) as e:
        _fail(e)

    try:
        summary = run(data, path, checked=True)  # checked above, with the dry run's messages
    except (RunFolderError, NonFiniteError) as e:
        _fail(e)
    except OSError as e:
        if e.errno == errno.ENOSPC:
            _fail(e)
        raise
    if is_main_process():
        emit(summary)


FIRST = ("method", "hicra_alpha", "seed", "max_steps", "run_dir", "model", "dataset")  # what --help lists first
EXAMPLES = (
    "python -m hicra.train configs/sandbox.yaml --method hicra --hicra_alpha 0.2 --seed 1 --run_dir runs/my-hicra",
    "python -m hicra.train configs/sandbox.yaml --method grpo --max_steps 50 --dry_run   # check it, load nothing",
    "python -m hicra.train configs/qwen3_4b_base.yaml --resume   # continue a run from its newest checkpoint",
)


def train_help() -> str:
    """``python -m hicra.train --help``: the recipe argument and the options changed most with an example first,
    then every TrainScript and HICRAConfig option (this project's, then those inherited from TRL), then the knobs
    of methods registered outside hicra.method.methods (they are recipe keys too)."""
    text = config_help(
        (TrainScript, HICRAConfig),
        first=FIRST,
        examples=EXAMPLES,
        usage=f"usage: python -m hicra.train [RECIPE.yaml] [--option value ...]   (no RECIPE: {DEFAULT_RECIPE})",
        recipe=(DEFAULT_RECIPE, read_yaml_mapping(resolve(DEFAULT_RECIPE))),  # what a run without a recipe uses
    )
    extra = [k for k in all_knobs().values() if k.name not in CONFIG_KEYS]
    if extra:
        text += "\n\noptions (knobs of methods registered elsewhere):\n" + "\n".join(
            f"  --{k.name}  (default: {k.default!r})\n      {k.help}" for k in extra
        )
    return text


def _fail(e: BaseException):
    print(f"error: {e}", file=sys.stderr, flush=True)
    raise SystemExit(2) from None


if __name__ == "__main__":
    main()
