"""hicra: planning tokens, hierarchy dynamics and hierarchy-aware RL (HICRA, arXiv 2509.03646).

Library modules (each with its own how-to-run docstring): ``tagger``, ``advantage``,
``metrics``, ``rewards``, ``data``, ``models``, ``sgfile``, ``sandbox``, ``trainer``
(the only TRL import), ``train``, ``dynamics``, ``generate``, ``figures``, ``plotting``,
``config``. Steps run as notebooks (``notebooks/``) or ``python -m hicra.<step> CONFIG``.
"""
__version__ = "0.1.0"
