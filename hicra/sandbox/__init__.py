"""The CPU-default sandbox: a Countdown world with known planning spans and its tiny model.

python -m hicra.sandbox [CONFIG.yaml] [--seed N] [--difficulty v2|v1|easy|hard] [--sft_steps N]
"""

from hicra.sandbox.build import SandboxConfig, build, load  # noqa: F401
from hicra.sandbox.world import ALL_GRAMS, Task, WorldConfig, classify_failure, make_tasks, make_trace, prompt, verify  # noqa: F401
