"""The config layers under one name, for code written before they were split (issue #36).

``hicra.stepkit.config`` used to do five jobs; each now lives on its own floor, and this module re-exports them so
``from hicra.stepkit.config import X`` keeps working for every X it offered:

* ``hicra.store.paths``: ``REPO_ROOT``, ``resolve``, ``weight_files``;
* ``hicra.stepkit.cli``: YAML + ``--key value`` -> typed dataclass (``parse_cli``, ``load_config``, ``coerce``,
  ``split_flags``, ``config_help``, "did you mean" for unknown options);
* ``hicra.stepkit.steps``: ``StepConfig``, ``start_step``, ``from_params``, ``emit``, the signal handlers;
* ``hicra.sandbox.config``: ``SandboxStepConfig``, an old name reached through ``hicra._moved`` with a
  ``DeprecationWarning`` (the sandbox is above this floor: this module does not import it);
* ``hicra.stepkit.plotting``: ``save_step_figure``.

Library modules import the layer they need, not this one (a figure step's stamp then leaves out the sandbox
build and the trainer: ``hicra.orchestration.runner.code_files``).

    from hicra.stepkit.config import parse_cli, StepConfig     # still works
"""

from __future__ import annotations

from hicra import _moved
from hicra.stepkit.cli import (  # noqa: F401
    _coerce_bool,
    _coerce_list,
    _coerce_number,
    _coerce_union,
    _prog,
    _type_name,
    _yaml_text,
    bool_fields,
    coerce,
    config_help,
    config_path,
    did_you_mean,
    field_comments,
    from_dict,
    load_config,
    nearest,
    parse_cli,
    split_flags,
    typed,
    unknown_keys_error,
)
from hicra.stepkit.plotting import save_step_figure  # noqa: F401
from hicra.stepkit.steps import (  # noqa: F401
    PARENT_WATCH,
    StepConfig,
    _interrupt,
    emit,
    from_params,
    install_signal_handlers,
    start_step,
    watch_parent,
)
from hicra.store.paths import REPO_ROOT, resolve, weight_files  # noqa: F401


def __getattr__(name: str):
    """``SandboxStepConfig``: an old name of this module, now ``hicra.sandbox.config``'s (PEP 562, hicra._moved)."""
    return _moved.old_attribute(__name__, name)
