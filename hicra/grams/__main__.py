"""CLI twin of notebooks/01_strategic_grams.ipynb.

    python -m hicra.grams configs/grams_sandbox.yaml [--annotator llm --base_url http://127.0.0.1:8000/v1]

Last stdout line: JSON with ``precision``, ``recall``, ``n_grams`` (precision/recall are null off the sandbox).
"""

from hicra.grams.step import GramsConfig, run
from hicra.stepkit.steps import cli_main


def main(argv=None):
    cli_main(GramsConfig, run, argv)


if __name__ == "__main__":
    main()
