"""What determines a sandbox build (``SandboxConfig``), and the step fields that pick one (``SandboxStepConfig``).

Light on purpose: it imports the world's settings and nothing that trains, so a step's config, a dry run or a
``--help`` reads a sandbox's options without loading torch or TRL (``hicra.sandbox.build`` builds it).

    from hicra.sandbox.config import SandboxConfig
    SandboxConfig(seed=1).key()     # the hash that names the build's cache folder
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import asdict, dataclass, field

from hicra.sandbox.world import DIFFICULTY, WorldConfig
from hicra.stepkit.cli import from_dict
from hicra.stepkit.steps import StepConfig

BUILD_VERSION = 1


@dataclass
class SandboxConfig:
    """Everything that determines a sandbox build (its hash names the cache folder)."""

    seed: int = 0  # world, tokenizer and warm-start seed
    difficulty: str = "v2"  # v2 | v1 | easy | hard (hicra.sandbox.world.DIFFICULTY)
    vocab_size: int = 1024  # BPE vocabulary of the sandbox tokenizer
    split_digits: bool = False  # False: numbers as single tokens (v2); True: one token per digit (v1)
    hidden_size: int = 128  # Llama hidden size of the tiny model
    n_layers: int = 4  # transformer layers
    n_heads: int = 4  # attention heads
    n_train_tasks: int = 1000  # SFT tasks, drawn from ``sft_split`` (v2 has 891)
    traces_per_task: int = 16  # warm-start traces per SFT task
    sft_steps: int = 3000  # warm-start SFT steps
    batch_size: int = 16  # warm-start SFT batch size
    learning_rate: float = 3e-3  # warm-start SFT learning rate
    n_val: int = 200  # validation tasks scored after the build (calibration)
    max_new_tokens: int = 160  # completion cap of the build's samples (tokens)
    sft_split: str = "sft"  # "sft" / "rl": disjoint task pools (v2); "train": one shared pool (v1)
    rl_split: str = "rl"  # task pool of RL prompts
    world: dict = field(default_factory=dict)  # overrides of WorldConfig fields
    torch_threads: int = 1  # torch threads of SFT (its weights depend on it): strategy/execution shipped with 1
    # recorded; the default v2 build recorded none, and a --force rebuild in the locked environment differs from it
    # with 1 and with 2 threads alike (data/sandbox/README.md)

    def world_config(self) -> WorldConfig:
        if self.difficulty not in DIFFICULTY:
            raise ValueError(f"difficulty must be one of {list(DIFFICULTY)}; got {self.difficulty!r}")
        return WorldConfig(seed=self.seed, **{**DIFFICULTY[self.difficulty], **self.world})

    def key(self) -> str:
        d = asdict(self)
        if d["torch_threads"] == 1:  # the default keys as before the field existed: the shipped builds keep their hash
            del d["torch_threads"]
        blob = json.dumps({**d, "world_resolved": asdict(self.world_config()), "v": BUILD_VERSION}, sort_keys=True)
        return hashlib.sha1(blob.encode()).hexdigest()[:10]


@dataclasses.dataclass
class SandboxStepConfig(StepConfig):
    """A step that can use the sandbox: which build (its seed) and ``SandboxConfig`` overrides."""

    sandbox_seed: int = 0  # which sandbox build (its seed)
    sandbox: dict = dataclasses.field(default_factory=dict)  # SandboxConfig overrides, e.g. {sft_steps: 6000}

    def sandbox_config(self):
        return from_dict(SandboxConfig, {"seed": self.sandbox_seed, **self.sandbox})
