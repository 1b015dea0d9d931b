"""Floor 6, the pipeline's internals (issue #36 item 6): profiles as data (``profiles``), the runner with its stamps
and parallel waves (``runner``), a profile as another plus listed differences (``rehearsal``: the paper rehearsal)
and the results page (``report``). The command is ``python -m hicra.pipeline``.

May import: the floors below (``hicra.stepkit``, ``hicra.store``) and the entry points a profile runs or checks
(``hicra.train`` for a training step's dry run, ``hicra.runinfo``, ``hicra.rehearsal_proof``); never the studies or
``hicra.analysis``, which sit above it.
"""
