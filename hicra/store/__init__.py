"""Floor 0, files and the world outside (issue #36 item 6): how a run's and a step's files are written and read
(``io``: atomic writes, whole JSONL lines, tolerant readers), where things are (``paths``: the repository root,
relative paths, the cache), one writer per run folder and resume from a complete checkpoint (``runfolder``), the
strategic-gram file format (``sgfile``), the OpenAI-compatible chat client (``llm``) and the "did you mean" of
every error that refuses a name (``names``).

May import: nothing of ``hicra`` outside this package (the bottom floor). No torch.

    from hicra.store.io import read_metrics, write_json
    lines = read_metrics("runs/demo/train-hicra-s0/metrics.jsonl")   # whole lines only, a torn last line skipped
"""
