"""Strategic-gram construction (paper §2.1): mine -> annotate -> review -> SG file -> measured quality.

python -m hicra.grams configs/grams_sandbox.yaml        # see hicra.grams.step for the options
"""

from hicra.grams.annotate import Judgement, LLMAnnotator, OfflineAnnotator, parse_labels
from hicra.grams.mine import Candidate, mine
from hicra.grams.review import export_review, import_review, write_final
from hicra.grams.step import GramsConfig, run

__all__ = [
    "Candidate",
    "mine",
    "Judgement",
    "OfflineAnnotator",
    "LLMAnnotator",
    "parse_labels",
    "export_review",
    "import_review",
    "write_final",
    "GramsConfig",
    "run",
]
