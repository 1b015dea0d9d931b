"""PlanningTagger on handcrafted strings and two real tokenizer families."""

import pytest
import torch

from hicra.method.tagger import PlanningTagger, normalize_text

GRAMS = [
    "let's try a different approach",
    "but the problem says",
    "we can use the fact that",
    "so",
    "4 =",
    "wait",
    "let's try",
    "try a different",
]


@pytest.fixture(params=["smollm2", "metaspace"])
def tok(request, smollm2_tokenizer, metaspace_tokenizer):
    return smollm2_tokenizer if request.param == "smollm2" else metaspace_tokenizer


def planning_words(tagger, tok, text):
    ids = tok(text, add_special_tokens=False)["input_ids"]
    m = tagger.mask(torch.tensor([ids]))[0]
    return "".join(tok.decode([i]) if on else "|" for i, on in zip(ids, m.tolist())), m


def test_spans_case_apostrophes_whitespace():
    t = PlanningTagger(GRAMS)
    text = "Hmm. LET’S  TRY a\n\tdifferent Approach now"
    spans = t.spans(text)
    assert (5, 37, "let's try a different approach") in spans
    assert text[5:37] == "LET’S  TRY a\n\tdifferent Approach"
    assert {g for _, _, g in spans} == {"let's try a different approach", "let's try", "try a different"}


def test_word_boundaries():
    t = PlanningTagger(GRAMS)
    assert t.spans("also reasonable") == []
    assert [g for _, _, g in t.spans("24 = 6*4, and 4 = 2+2")] == ["4 ="]
    assert [g for _, _, g in t.spans("so, 3 is odd; wait!")] == ["so", "wait"]
    assert t.spans("") == [] and t.spans(None) == []


@pytest.mark.parametrize(
    "text",
    [
        "First compute 3+4. Let's try a different approach: 24 = 4*6. Also so we get 7.",
        " but THE problem says x is 5, so we can use the fact that y = 2x.",
        "We got 12. Wait,\nlet’s try a   different approach.",
    ],
)
def test_mask_matches_char_spans(tok, text):
    """Token mask == tokens overlapping a ground-truth char span, for both tokenizer families."""
    t = PlanningTagger(GRAMS, tok)
    enc = tok(text, add_special_tokens=False, return_offsets_mapping=True)
    spans = t.spans(text)
    want = [any(s < e2 and s2 < e for s2, e2, _ in spans) for s, e in enc["offset_mapping"]]
    got = t.mask(torch.tensor([enc["input_ids"]]))[0].tolist()
    assert got == want
    assert any(got)


def test_padding_never_planning_and_batches(smollm2_tokenizer):
    tok = smollm2_tokenizer
    t = PlanningTagger(GRAMS, tok)
    a = tok("wait, so", add_special_tokens=False)["input_ids"]
    b = tok("let's try a different approach", add_special_tokens=False)["input_ids"]
    T = max(len(a), len(b)) + 3
    pad = tok.pad_token_id
    ids = torch.tensor([a + [pad] * (T - len(a)), b + [pad] * (T - len(b))])
    cm = torch.tensor([[1] * len(a) + [0] * (T - len(a)), [1] * len(b) + [0] * (T - len(b))])
    m = t.mask(ids, cm)
    assert m.shape == (2, T) and m.dtype == torch.bool
    assert not m[cm == 0].any()
    assert m[1, : len(b)].all()
    # a match must not run across rows: "so" at the end of row 0 + row 1 start
    assert t.occurrences(ids, cm) == [
        ["wait", "so"],
        ["let's try a different approach", "let's try", "try a different"],
    ]


def test_longest_gram_attribution(smollm2_tokenizer):
    t = PlanningTagger(GRAMS, smollm2_tokenizer)
    ids = smollm2_tokenizer("Let's try a different approach", add_special_tokens=False)["input_ids"]
    g = t.token_grams(torch.tensor([ids]))[0]
    assert (g >= 0).all()
    assert {t.grams[i] for i in g} == {"let's try a different approach"}


def test_special_tokens_break_matches(smollm2_tokenizer):
    tok = smollm2_tokenizer
    t = PlanningTagger(["let's try"], tok)
    ids = (
        tok("let's", add_special_tokens=False)["input_ids"]
        + [tok.eos_token_id]
        + tok(" try", add_special_tokens=False)["input_ids"]
    )
    assert not t.mask(torch.tensor([ids])).any()


def test_out_of_vocab_ids_are_safe(smollm2_tokenizer):
    t = PlanningTagger(GRAMS, smollm2_tokenizer)
    ids = torch.tensor([[len(smollm2_tokenizer) + 50, -1, 5]])
    assert not t.mask(ids).any()


def test_bad_gram_lists():
    with pytest.raises(ValueError, match="at least one"):
        PlanningTagger(["  ", ""])


def test_sg_file_input(tmp_path):
    from hicra.store.sgfile import write_sg_file

    p = write_sg_file(tmp_path / "sg.json", [{"gram": "Wait", "kind": "backtracing"}], {"annotator": "test"})
    assert PlanningTagger(p).grams == ["wait"]


def test_normalize_text():
    assert normalize_text("  Let’s\n\n TRY  ") == "let's try"
