"""CLI twin of notebooks/00_sandbox.ipynb: build or reuse the sandbox, its calibration figure; last line is JSON.

python -m hicra.sandbox [CONFIG.yaml] [--seed N] [--sandbox '{"difficulty": "v1"}'] [--force true]
"""

from hicra.sandbox.build import SandboxConfig
from hicra.sandbox.step import BuildConfig, run
from hicra.stepkit.cli import parse_cli
from hicra.stepkit.steps import emit, install_signal_handlers, user_errors


def main(argv=None):
    install_signal_handlers()
    cfg = parse_cli(BuildConfig, argv)
    try:
        SandboxConfig(**{"seed": cfg.seed, **cfg.sandbox}).world_config()  # a bad world is one line, not a traceback
    except (TypeError, ValueError) as e:
        raise SystemExit(f"error: {e}") from None
    emit(user_errors(run, cfg))


if __name__ == "__main__":
    main()
