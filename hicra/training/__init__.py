"""Floor 2, training (issue #36 item 6): the RL trainer (``trainer``: HICRATrainer on TRL's GRPOTrainer), its
configuration (``train_config``: HICRAConfig), the sandbox's SFT warm start (``sft``), one step's metrics line
(``step_stats``), the run folder's housekeeping (``run_dir``), DAPO dynamic sampling (``dynamic_sampling``), the
CPU-speed overrides (``speed``), the reward (``rewards``), sampling (``decode``: the compacting sampler,
``generate``), and the run's guards (``finite``: NaN never passes; ``ranges``: option ranges; ``resume``: a resume
continues the same run).

May import: ``hicra.method``, ``hicra.store`` and ``hicra.grading`` (the grader's worker, an entry point on floor 0).
The entry point is ``python -m hicra.train``.
"""
