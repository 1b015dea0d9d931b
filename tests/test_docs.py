"""The docs a reader relies on stay true to the repository (issue #39): every figure or table they cite exists (sets
move to figures/archive/), each of the paper's claims has a verdict in the README and docs/study.md, and
docs/library.md names every module of the library."""

from __future__ import annotations

import itertools
import re

import pytest
from conftest import ROOT

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# outputs a plan names before its runs exist (a pre-registered plan is not edited afterwards)
PLANNED: set[str] = set()  # files a doc names before they exist (a plan written before its runs)


def _paths(text: str, prefix: str) -> set[str]:
    """Concrete ``prefix/...`` paths cited in ``text``, ``{a,b}`` expanded; patterns (``<tag>``, ``*``) skipped."""
    out = set()
    for tok in re.findall(rf"(?<![\w/]){prefix}/[\w./{{}},<>*+-]*[\w}}]", text):
        if any(c in tok for c in "<>*"):
            continue
        parts = re.split(r"\{([^}]*)\}", tok)
        out |= {"".join(c) for c in itertools.product(*[p.split(",") if i % 2 else [p] for i, p in enumerate(parts)])}
    return out


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_every_figure_and_script_a_doc_cites_exists(doc):
    cited = _paths(doc.read_text(), "figures") | _paths(doc.read_text(), "scripts")
    missing = sorted(p for p in cited - PLANNED if not (ROOT / p).exists())
    assert not missing, f"{doc.name} cites files that are not in the repository: {missing}"


@pytest.mark.parametrize("doc", ["README.md", "docs/study.md"])
def test_each_claim_has_a_verdict(doc):
    """The claims tables: one row per claim (a)-(e) and Fig 4, each with a verdict word of the plan's vocabulary."""
    text = (ROOT / doc).read_text()
    section = text[text.index("## The paper's claims") :].split("\n## ")[0]
    rows = [line for line in section.splitlines() if line.startswith(("| (", "| Fig 4"))]
    verdicts = ("reproduced", "partly", "inconclusive", "not reproduced", "faster early", "not supported")
    for claim in ("(a)", "(b)", "(c)", "(d)", "(e)", "Fig 4"):
        row = next((r for r in rows if r.startswith(f"| {claim}")), None)
        assert row is not None, f"{doc}: no row for claim {claim}"
        assert any(v in row.split("|")[2] for v in verdicts), f"{doc}: claim {claim} has no verdict: {row[:120]}"


def test_library_md_names_every_module():
    text = (ROOT / "docs" / "library.md").read_text()
    modules = [p.stem for p in (ROOT / "hicra").glob("*.py") if p.stem != "__init__"]
    modules += [p.name for p in (ROOT / "hicra").iterdir() if (p / "__init__.py").exists()]
    floors = [p.parent for p in (ROOT / "hicra").glob("*/__init__.py") if p.read_text().startswith('"""Floor ')]
    modules += [f"{d.name}.{p.stem}" for d in floors for p in d.glob("*.py") if p.stem != "__init__"]  # full names
    missing = sorted(m for m in modules if not re.search(rf"hicra\.{m}\b", text))
    assert not missing, f"docs/library.md does not name: {missing}"
    assert not list((ROOT / "docs").glob("*.py")), "scripts live in scripts/, not docs/"


def test_changelog_is_keep_a_changelog_and_its_last_release_is_the_package_version():
    import tomllib

    import hicra

    heads = re.findall(r"^## \[([^\]]+)\](?: - (\d{4}-\d{2}-\d{2}))?", (ROOT / "CHANGELOG.md").read_text(), re.M)
    assert heads[0][0] == "Unreleased"
    releases = [v for v, _ in heads[1:]]
    assert releases and all(re.fullmatch(r"\d+\.\d+\.\d+", v) for v in releases), releases
    assert all(d for _, d in heads[1:]), "every release has a date"
    assert releases == sorted(releases, key=lambda v: tuple(map(int, v.split("."))), reverse=True)
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert releases[0] == version == hicra.__version__
