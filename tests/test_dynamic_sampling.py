"""DAPO dynamic sampling's arithmetic on hand-made batches (the TRL side runs in test_train)."""

import pytest
import torch

from hicra.training.dynamic_sampling import concat_batches, live_groups, select_rows


def test_live_groups_sequence_and_token_level():
    A = torch.tensor([0.0, 0.0, 1.0, -1.0, 0.0, 0.0])  # groups of 2: dead, live, dead
    assert live_groups(A, 2).tolist() == [False, True, False]
    tok = torch.zeros(6, 3)
    tok[5, 2] = -0.3  # one non-zero token makes its group live
    assert live_groups(tok, 2).tolist() == [False, False, True]
    with pytest.raises(ValueError, match="groups of 4"):
        live_groups(A, 4)


def test_select_rows_keeps_live_groups_first_then_fills_up():
    A = torch.tensor([0.0, 0.0, 1.0, -1.0, 0.0, 0.0, 0.5, -0.5])  # groups 1 and 3 live
    rows, live = select_rows(A, 2, 2)
    assert rows.tolist() == [2, 3, 6, 7] and live == 2
    rows, live = select_rows(A, 2, 3)  # too few live: the first dead group fills up
    assert rows.tolist() == [2, 3, 6, 7, 0, 1] and live == 2
    with pytest.raises(ValueError, match="need 5 groups"):
        select_rows(A, 2, 5)


def test_concat_batches_pads_prompts_left_and_completions_right():
    a = {
        "prompt_ids": torch.tensor([[5, 6]]),
        "prompt_mask": torch.tensor([[1, 1]]),
        "completion_ids": torch.tensor([[7]]),
        "completion_mask": torch.tensor([[True]]),
        "advantages": torch.tensor([1.0]),
        "num_items_in_batch": torch.tensor(1),
        "note": "a",
    }
    b = {
        "prompt_ids": torch.tensor([[4, 5, 6]]),
        "prompt_mask": torch.tensor([[1, 1, 1]]),
        "completion_ids": torch.tensor([[8, 9]]),
        "completion_mask": torch.tensor([[True, True]]),
        "advantages": torch.tensor([-1.0]),
        "num_items_in_batch": torch.tensor(2),
        "note": "b",
    }
    m = concat_batches([a, b], pad_id=0)
    assert m["prompt_ids"].tolist() == [[0, 5, 6], [4, 5, 6]] and m["prompt_mask"].tolist() == [[0, 1, 1], [1, 1, 1]]
    assert m["completion_ids"].tolist() == [[7, 0], [8, 9]]
    assert m["completion_mask"].dtype == torch.bool and m["completion_mask"].tolist() == [[True, False], [True, True]]
    assert m["advantages"].tolist() == [1.0, -1.0] and m["note"] == "a" and int(m["num_items_in_batch"]) == 1
    assert concat_batches([a], 0) is a
