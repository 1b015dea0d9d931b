"""The CPU-default sandbox: a Countdown world with known planning spans and its tiny model.

Why: the paper's claims are about which tokens plan; on real text that is judged, here it is known (every
strategic gram is written into the traces), so the project's claims can be checked against ground truth on 2 cores.
``world`` makes the tasks and traces, ``build`` the warm-started tiny model, ``anatomy`` measures a warm start.

    python -m hicra.sandbox [CONFIG.yaml] [--seed N] [--sandbox '{"difficulty": "v1", "sft_steps": N}'] [--force true]
"""

from hicra.sandbox.build import SandboxConfig, build, load  # noqa: F401
from hicra.sandbox.world import ALL_GRAMS, Task, WorldConfig, classify_failure, make_tasks, make_trace, prompt, verify  # noqa: F401
