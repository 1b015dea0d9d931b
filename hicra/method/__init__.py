"""Floor 1, the method itself (issue #36 item 6): what a newcomer looks for first. The planning-token tagger
(``tagger``), GRPO's and HICRA's advantages (``advantage``: Â = A + α|A| on planning tokens), the method registry
and its knobs (``methods``, ``knobs``, ``alpha``: adaptive α), the paper's measures (``metrics``: semantic entropy,
planning vs execution entropy, pass@k; ``dynamics``: what one per-step metrics line holds) and every interval and
test the project reports (``stats``).

May import: ``hicra.store`` (the strategic-gram file format). No TRL; torch only where a rule computes on tensors.

    from hicra.method.advantage import hicra_advantages
    A_hat = hicra_advantages(A, planning_mask)        # A + 0.2·|A| on planning tokens, A elsewhere
"""
