"""Floor 6, the pipeline's internals (issue #36 item 6): profiles as data (``profiles``), the runner with its stamps
and parallel waves (``runner``), a profile as another plus listed differences (``rehearsal``: the paper rehearsal)
and the results page (``report``). The command is ``python -m hicra.pipeline``.

May import: the floors below (``hicra.stepkit``, ``hicra.store``) and the entry points a profile runs or checks
(``hicra.train`` for a training step's dry run, ``hicra.runinfo``, ``hicra.rehearsal_proof``); never the studies or
``hicra.analysis``, which sit above it. A profile names the steps' modules as data (its ``from: module:function``,
and ``profiles.STEP_CONFIGS``' notebook -> config table), and a dry run or a run imports them by that name: the
dispatch of a plugin, not an import of this floor's code (tests/test_architecture.py reads the two apart).
"""
