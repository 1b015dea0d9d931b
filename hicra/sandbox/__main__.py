"""CLI: build or reuse the sandbox world + warm-started tiny model; last line is JSON.

    python -m hicra.sandbox [CONFIG.yaml] [--seed N] [--difficulty v2|v1] [--force true]
"""
import sys

from hicra.config import emit, parse_cli
from hicra.sandbox.build import SandboxConfig, build


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if "-h" in argv or "--help" in argv:
        from hicra.config import config_help
        print(config_help((SandboxConfig,)) + "\n  --force bool  (default: False)\n      rebuild even when the build "
              "is cached or shipped")
        return
    force = False
    if "--force" in argv:
        i = argv.index("--force")
        force = argv[i + 1].lower() in ("1", "true", "yes") if i + 1 < len(argv) else True
        del argv[i:i + 2]
    cfg = parse_cli(SandboxConfig, argv)
    info = build(cfg, force=force)
    emit({k: info[k] for k in ("model_dir", "cached", "build_seconds", "val_accuracy", "errors")})


if __name__ == "__main__":
    main()
