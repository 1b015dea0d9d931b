"""Clean notebook output: one progress bar per loop, no per-step loss table, the known noise filtered.

Executed notebooks are read in a browser (JupyterLab, the runs' executed copies). Left alone, a training notebook
shows a block of warnings (deprecations, TRL's notice about its experimental module, tqdm asking for ipywidgets)
and transformers' notebook callback draws a table with one row per logged step (100 rows for the demo's run)
before the one plot that matters. ``quiet()``, called once in a notebook's import cell, keeps one progress bar per
loop (a widget when ipywidgets is installed, as ``make lab``'s venv has it), drops the per-step table (every step's
numbers are in the run's ``metrics.jsonl``, which the notebook plots) and silences those warnings. Errors still
show: only FutureWarning / DeprecationWarning, TRL's experimental notice and library info logs are filtered.

    from hicra.stepkit.nbclean import quiet
    quiet()
"""

from __future__ import annotations

import os
import warnings


def quiet() -> None:
    """Filter the known notebook noise in this kernel (idempotent)."""
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")  # TRL's "you are importing from trl.experimental"
    for category in (FutureWarning, DeprecationWarning):
        warnings.filterwarnings("ignore", category=category)
    warnings.filterwarnings("ignore", message="IProgress not found")  # tqdm.auto without ipywidgets
    import transformers.trainer
    from transformers.trainer_callback import ProgressCallback
    from transformers.utils import logging as hf_logging

    class BarOnlyProgress(ProgressCallback):
        """transformers' progress bar without its per-step printout (the notebook table, the logs dict)."""

        def on_log(self, args, state, control, logs=None, **kwargs):
            return None

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()  # "Loading weights" bars of every from_pretrained; the training bar stays
    transformers.trainer.DEFAULT_PROGRESS_CALLBACK = BarOnlyProgress  # read when a Trainer is built
