"""hicra: planning tokens, hierarchy dynamics and hierarchy-aware RL (HICRA, arXiv 2509.03646).

Library modules (each with its own how-to-run docstring): ``tagger``, ``advantage``,
``metrics``, ``rewards``, ``data``, ``models``, ``sgfile``, ``sandbox``, ``grams``
(strategic-gram construction), ``llm`` (OpenAI-compatible client), ``trainer`` (the only
TRL import), ``train``, ``dynamics``, ``error_analysis`` (Fig 4), ``forks`` (Fig 9), ``evaluate``
(Table 1), ``pipeline`` (every figure), ``generate``, ``figures``, ``plotting``, ``config``.
Steps run as notebooks (``notebooks/``) or ``python -m hicra.<step> CONFIG``.
"""

__version__ = "0.5.0"  # the last release in CHANGELOG.md (git tag v0.5.0); pyproject.toml says the same
