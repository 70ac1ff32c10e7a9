"""The pieces of long-context evaluation on one process: bucket edges and sums, the per-token loss (tiled or not),
passkey cases and lengths, and the pictures (the long_range corpus: test_long_range.py)."""

import json

import pytest
import torch

from framework.data.long_range import TokenLayout
from framework.eval import passkey as pk
from framework.eval.positions import auto_edges, bucket_sums
from framework.loss.causal_lm import IGNORE, per_token


def test_auto_edges_double_from_a_64th_of_the_length():
    assert auto_edges(256) == [0, 4, 8, 16, 32, 64, 128, 256]
    assert auto_edges(65536) == [0] + [1024 * 2**i for i in range(7)]
    assert auto_edges(1000) == [0, 8, 16, 32, 64, 128, 256, 512, 1000]  # not a power of two: ends at seq_length
    assert auto_edges(16) == [0, 1, 2, 4, 8, 16]


def test_bucket_sums_count_the_predicted_tokens_position_and_skip_ignored_labels():
    ce = torch.tensor([[1.0, 2.0, 3.0, 4.0, 5.0]])
    pos = torch.tensor([[0, 1, 2, 0, 1]])  # two documents: the second starts at index 3
    labels = torch.tensor([[7, 7, IGNORE, 7, 7]])  # the first document's last token predicts nothing in it
    out = bucket_sums(ce, labels, pos, torch.tensor([0, 2, 4]))
    # predicted positions: 1, 2, -, 1, 2 -> bucket [0,2): indices 0 and 3; [2,4): indices 1 and 4
    assert out.tolist() == [[1.0 + 4.0, 2.0 + 5.0], [2.0, 2.0]]


@pytest.mark.parametrize("tiles", [1, 3, 7])
def test_per_token_loss_equals_cross_entropy_tiled_or_not(tiles):
    torch.manual_seed(0)
    head = torch.nn.Linear(8, 11, bias=False)
    hidden, labels = torch.randn(2, 7, 8), torch.randint(0, 11, (2, 7))
    labels[0, 2] = IGNORE
    ce, argmax = per_token(hidden, head, labels, tiles)
    logits = head(hidden)
    want = torch.nn.functional.cross_entropy(logits.transpose(1, 2), labels, ignore_index=IGNORE, reduction="none")
    torch.testing.assert_close(ce, want)
    assert torch.equal(argmax, logits.argmax(-1)) and ce[0, 2] == 0


def test_passkey_lengths_round_down_to_the_shards_and_auto_is_eighths_to_whole():
    assert pk.lengths("auto", 1024, 4) == [(128, 128), (256, 256), (512, 512), (1024, 1024)]
    assert pk.lengths([130, 1024], 1024, 8) == [(130, 128), (1024, 1024)]


def test_rounded_passkey_length_is_said_at_start():
    from framework.cli import start_lines
    from framework.validate import validate
    from helpers import compose

    cfg = compose(["eval.passkey=true", "eval.passkey_lengths=[129,256]"])
    lines = start_lines(cfg, "/tmp/run", validate(cfg))
    assert "note: eval.passkey_lengths rounded down to a multiple of the row's 2 shards: 129 -> 128" in lines


def test_token_passkey_case_ends_with_the_key_planted_at_its_depth():
    lay = TokenLayout(384)
    for depth in (0.0, 0.5, 1.0):
        (case,) = pk.cases(lay, lengths_used=[100], depths=[depth], samples=1, seed=3)
        ids = case.input_ids.tolist()
        name = ids[case.answer_start - 1]
        assert (
            len(ids) == 100
            and ids[case.answer_start :] == case.answer_ids
            and ids[case.answer_start - 2] == lay.query_mark
            and name in lay.names
        )
        at = ids.index(name)  # the needle, as the question: QUERY NAME, then the key
        assert ids[at - 1] == lay.query_mark and ids[at + 1 : at + 5] == case.answer_ids
        assert abs(at / (100 - lay.pair_tokens) - depth) < 0.02
    again = pk.cases(lay, lengths_used=[100], depths=[0.5], samples=2, seed=3)
    assert again[0].input_ids.tolist() != again[1].input_ids.tolist()  # samples differ, and repeat across calls
    assert [c.input_ids.tolist() for c in again] == [
        c.input_ids.tolist() for c in pk.cases(lay, lengths_used=[100], depths=[0.5], samples=2, seed=3)
    ]


def test_pictures_are_drawn(tmp_path):
    from framework.eval import report

    rows = [
        {"length": n, "depth": d, "correct": n < 200, "answer_logprob": -1.0} for n in (64, 256) for d in (0.1, 0.9)
    ]
    path = tmp_path / "eval" / "passkey_step_3.jsonl"
    path.parent.mkdir()
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    history = [(s, [[0, 4, 5.0 - s, 6], [4, 256, 4.0 - s, 500], [256, 512, None, 0]]) for s in (1, 3)]
    report.draw(str(tmp_path), step=3, history=history, passkey_path=str(path))
    assert (tmp_path / "eval" / "loss_by_position.png").stat().st_size > 1000
    assert (tmp_path / "eval" / "passkey_step_3.png").stat().st_size > 1000
    assert report.heatmap_cells(rows)[2] == [[1.0, 0.0], [1.0, 0.0]]
