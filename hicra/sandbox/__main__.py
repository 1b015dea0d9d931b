"""CLI twin of notebooks/00_sandbox.ipynb: build or reuse the sandbox, its calibration figure; last line is JSON.

    python -m hicra.sandbox [CONFIG.yaml] [--seed N] [--sandbox '{"difficulty": "v1"}'] [--force true]
"""
from hicra.config import emit, install_signal_handlers, parse_cli
from hicra.sandbox.step import BuildConfig, run


def main(argv=None):
    install_signal_handlers()
    emit(run(parse_cli(BuildConfig, argv)))


if __name__ == "__main__":
    main()
