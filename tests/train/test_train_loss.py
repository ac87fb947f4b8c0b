"""Contrastive loss vs a plain reference, false-negative masking, and GradCache == full batch."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from audiovec.train.gradcache import full_batch_step, gradcache_step, split_batch
from audiovec.train.loss import (
    ContrastiveLoss,
    facet_label_keys,
    false_negative_mask,
    in_batch_accuracy,
    label_keys,
    text_keys,
)


def reference_loss(audio, text, temperature, allowed):
    """Row-by-row InfoNCE written out longhand: allowed[i][j] says whether column j counts."""
    n = len(audio)
    sim = [[float(audio[i] @ text[j]) / temperature for j in range(n)] for i in range(n)]

    def ce(rows, ok):
        total = 0.0
        for i in range(n):
            denom = sum(math.exp(rows[i][j]) for j in range(n) if ok[i][j])
            total += -(rows[i][i] - math.log(denom))
        return total / n

    transposed = [[sim[j][i] for j in range(n)] for i in range(n)]
    allowed_t = [[allowed[j][i] for j in range(n)] for i in range(n)]
    return (ce(sim, allowed) + ce(transposed, allowed_t)) / 2


def unit(n, d, seed):
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(n, d, generator=g, dtype=torch.float64), dim=-1)


@pytest.mark.parametrize("temperature", [0.07, 0.5])
def test_loss_matches_reference_without_masking(temperature):
    a, t = unit(6, 8, 0), unit(6, 8, 1)
    loss = ContrastiveLoss(temperature=temperature, learnable=False, mask_false_negatives=False)
    everything = [[True] * 6 for _ in range(6)]
    expected = reference_loss(a, t, temperature, everything)
    assert loss(a, t).item() == pytest.approx(expected, rel=1e-5)


def test_loss_matches_paper_snippet():
    a, t = unit(5, 4, 2), unit(5, 4, 3)
    sim = a @ t.T / 0.07
    labels = torch.arange(5)
    snippet = (F.cross_entropy(sim, labels) + F.cross_entropy(sim.T, labels)) / 2
    got = ContrastiveLoss(0.07, learnable=False)(a, t)
    torch.testing.assert_close(got.double(), snippet, rtol=1e-5, atol=1e-6)


def test_masking_removes_exactly_the_duplicate_pairs():
    captions = ["a dog barks", "rain", "A dog  barks", "a car", "rain", "wind"]
    labels = [["Dog"], ["Rain"], ["dog"], None, ["rain", "wind"], ["wind", "rain"]]
    keys = [text_keys(captions), label_keys(labels)]
    # pairs sharing caption text (case/space-insensitive): (0,2), (1,4); label set: (0,2), (4,5)
    duplicates = {(0, 2), (2, 0), (1, 4), (4, 1), (4, 5), (5, 4)}
    allowed = [[(i, j) not in duplicates for j in range(6)] for i in range(6)]
    a, t = unit(6, 8, 4), unit(6, 8, 5)
    got = ContrastiveLoss(0.1, learnable=False)(a, t, keys)
    assert got.item() == pytest.approx(reference_loss(a, t, 0.1, allowed), rel=1e-5)
    unmasked = ContrastiveLoss(0.1, learnable=False, mask_false_negatives=False)(a, t, keys)
    assert abs(unmasked.item() - got.item()) > 1e-4  # masking changed something


FACET_LABELS = [["man_speech", "speech"]] * 4 + [["dog"]]
FACET_FIELDS = [
    {"language": "Dutch", "says": "hallo"},
    {"language": "Dutch", "says": "dag"},
    {"language": "French", "says": "mo"},
    {"language": "dutch", "says": "Hallo"},
    {},
]
FACET_CAPTIONS = [
    "a man saying 'hallo' in Dutch",
    "A man speaking",
    "a man speaking French",
    "A male voice talking in Dutch",
    "a dog barking",
]


def test_facet_keys_mask_a_pair_only_when_the_caption_fits_the_other_clip():
    keys = facet_label_keys(FACET_LABELS, FACET_FIELDS, FACET_CAPTIONS, ["language", "says", "accent"])
    mask = false_negative_mask([keys])
    mask.fill_diagonal_(False)
    # (audio i, caption j): "A man speaking" fits every man; "... in Dutch" fits the Dutch men; "'hallo'
    # in Dutch" fits clip 3 only (values compared case-free); French fits no other clip; the dog fits none
    expected = {(0, 1), (2, 1), (3, 1), (0, 3), (1, 3), (3, 0)}
    assert {tuple(ij) for ij in mask.nonzero().tolist()} == expected
    # the label set alone masks every pair of the four men, in both directions
    coarse = false_negative_mask([label_keys(FACET_LABELS)])
    coarse.fill_diagonal_(False)
    assert int(coarse.sum()) == 12


def test_facet_masked_loss_matches_the_reference_and_is_not_symmetric():
    keys = facet_label_keys(FACET_LABELS, FACET_FIELDS, FACET_CAPTIONS, ["language", "says"])
    allowed_pairs = {(0, 1), (2, 1), (3, 1), (0, 3), (1, 3), (3, 0)}
    allowed = [[(i, j) not in allowed_pairs for j in range(5)] for i in range(5)]
    a, t = unit(5, 8, 10), unit(5, 8, 11)
    got = ContrastiveLoss(0.1, learnable=False)(a, t, [text_keys(FACET_CAPTIONS), keys])
    assert got.item() == pytest.approx(reference_loss(a, t, 0.1, allowed), rel=1e-5)


def test_facet_keys_without_named_values_mask_as_the_label_set():
    generic = ["a man speaking", "someone talking", "a male voice", "speech", "a dog"]
    keys = facet_label_keys(FACET_LABELS, FACET_FIELDS, generic, ["language", "says"])
    torch.testing.assert_close(false_negative_mask([keys]), false_negative_mask([label_keys(FACET_LABELS)]))
    with pytest.raises(ValueError, match="differ in length"):
        facet_label_keys(FACET_LABELS, FACET_FIELDS[:2], generic, ["language"])


def test_masking_with_no_duplicates_is_a_no_op():
    keys = [text_keys(["a", "b", "c", "d"]), label_keys([None, None, None, None])]
    a, t = unit(4, 3, 6), unit(4, 3, 7)
    masked = ContrastiveLoss(0.07, learnable=False)(a, t, keys)
    plain = ContrastiveLoss(0.07, learnable=False, mask_false_negatives=False)(a, t)
    torch.testing.assert_close(masked, plain)


def test_learnable_temperature_is_clamped_and_gets_gradient():
    loss = ContrastiveLoss(0.07, learnable=True, min_temperature=0.05, max_temperature=0.5)
    a, t = unit(4, 3, 8).float().requires_grad_(), unit(4, 3, 9).float()
    loss(a, t).backward()
    assert loss.logit_scale.grad is not None and loss.logit_scale.grad.abs() > 0
    with torch.no_grad():
        loss.logit_scale.fill_(10.0)
    assert loss.temperature == pytest.approx(0.05)
    with torch.no_grad():
        loss.logit_scale.fill_(-10.0)
    assert loss.temperature == pytest.approx(0.5)
    with pytest.raises(ValueError, match="temperature"):
        ContrastiveLoss(0.001, min_temperature=0.01)


def test_hard_negatives_add_columns_and_masked_ones_do_not():
    a, p, n = unit(4, 5, 10), unit(4, 5, 11), unit(4, 5, 12)
    loss = ContrastiveLoss(0.2, learnable=False)
    base = loss(a, p)
    with_neg = loss(a, p, hard_negatives=n)
    assert with_neg > base
    # negatives identical in text to every positive are masked out entirely → same as no negatives
    pos_keys = [text_keys(["w", "x", "y", "z"])]
    masked = loss(a, p, pos_keys, hard_negatives=n, negative_keys=[text_keys(["x", "w", "z", "y"])])
    expected_cols = torch.ones(4, 8, dtype=torch.bool)
    expected_cols[[0, 1, 2, 3], [5, 4, 7, 6]] = False
    sim = torch.cat([a @ p.T, a @ n.T], 1) / 0.2
    rows = sim.masked_fill(~expected_cols, float("-inf"))
    target = torch.arange(4)
    ref = (F.cross_entropy(rows, target) + F.cross_entropy((a @ p.T / 0.2).T, target)) / 2
    torch.testing.assert_close(masked, ref)


def test_in_batch_accuracy_counts_duplicates_as_hits():
    a = torch.eye(3)
    t = torch.eye(3)[[1, 0, 2]]  # rows 0 and 1 swapped
    assert in_batch_accuracy(a, t) == (pytest.approx(1 / 3), pytest.approx(1 / 3))
    keys = [text_keys(["dog", "dog", "cat"])]
    assert in_batch_accuracy(a, t, keys) == (1.0, 1.0)


class TwoTower(nn.Module):
    """Small audio/text encoders with dropout, so RNG replay matters."""

    def __init__(self, dropout: float) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.audio = nn.Sequential(nn.Linear(12, 32), nn.GELU(), nn.Dropout(dropout), nn.Linear(32, 16))
        self.text = nn.Sequential(nn.Embedding(50, 16), nn.Dropout(dropout))
        self.text_out = nn.Linear(16, 16)

    def forward(self, chunk):
        a = F.normalize(self.audio(chunk["x"]), dim=-1)
        t = F.normalize(self.text_out(self.text(chunk["ids"]).mean(1)), dim=-1)
        return a, t


def make_batch(n=24):
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, 50, (n, 5), generator=g)
    ids[3] = ids[0]  # a duplicate caption
    return {
        "x": torch.randn(n, 12, generator=g),
        "ids": ids,
        "keys": text_keys([str(r.tolist()) for r in ids]),
    }


def grads(module):
    return {k: p.grad.clone() for k, p in module.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("chunk_size", [1, 5, 8, 24])
def test_gradcache_equals_full_batch(chunk_size):
    batch = make_batch()
    results = []
    for chunked in (False, True):
        model = TwoTower(dropout=0.0)
        crit = ContrastiveLoss(0.07, learnable=True)

        def loss_fn(a, t):
            return crit(a, t, [batch["keys"]])  # noqa: B023

        if chunked:
            loss = gradcache_step(model, list(split_batch(batch, chunk_size)), loss_fn)
        else:
            loss = full_batch_step(model, batch, loss_fn)
        results.append((loss, grads(model), crit.logit_scale.grad.clone()))
    (l0, g0, s0), (l1, g1, s1) = results
    assert abs(l0.item() - l1.item()) <= 1e-5
    assert g0.keys() == g1.keys() and len(g0) == 7
    for k in g0:
        torch.testing.assert_close(g1[k], g0[k], atol=1e-5, rtol=1e-5, msg=k)
    torch.testing.assert_close(s1, s0, atol=1e-5, rtol=1e-5)


def test_gradcache_replays_dropout_masks():
    """With dropout, GradCache must equal a with-grad pass over the same chunks in the same RNG order."""
    batch = make_batch()
    chunks = list(split_batch(batch, 6))
    crit = ContrastiveLoss(0.07, learnable=False)

    torch.manual_seed(123)
    ref_model = TwoTower(dropout=0.3)
    torch.manual_seed(123)
    outs = [ref_model(c) for c in chunks]
    ref_loss = crit(torch.cat([o[0] for o in outs]), torch.cat([o[1] for o in outs]), [batch["keys"]])
    ref_loss.backward()
    after_ref = torch.rand(1)

    gc_model = TwoTower(dropout=0.3)
    torch.manual_seed(123)
    loss = gradcache_step(gc_model, chunks, lambda a, t: crit(a, t, [batch["keys"]]))
    after_gc = torch.rand(1)
    assert abs(loss.item() - ref_loss.item()) <= 1e-5
    ref, got = grads(ref_model), grads(gc_model)
    for k in ref:
        torch.testing.assert_close(got[k], ref[k], atol=1e-5, rtol=1e-5, msg=k)
    assert torch.equal(after_ref, after_gc)  # the step leaves the RNG where a plain pass would


def test_gradcache_without_replay_would_differ():
    """Guard that the dropout test can fail: different masks per pass give different gradients."""
    batch = make_batch()
    chunks = list(split_batch(batch, 6))
    crit = ContrastiveLoss(0.07, learnable=False)
    torch.manual_seed(123)
    a = TwoTower(dropout=0.3)
    torch.manual_seed(123)
    outs = [a(c) for c in chunks]
    crit(torch.cat([o[0] for o in outs]), torch.cat([o[1] for o in outs])).backward()
    b = TwoTower(dropout=0.3)
    torch.manual_seed(999)
    outs = [b(c) for c in chunks]
    crit(torch.cat([o[0] for o in outs]), torch.cat([o[1] for o in outs])).backward()
    diff = max((grads(a)[k] - grads(b)[k]).abs().max().item() for k in grads(a))
    assert diff > 1e-4


def test_placeholder_negatives_are_dropped_for_every_row():
    """Rows without a hard negative carry a placeholder column; ``negative_valid`` removes it entirely, so the
    loss equals the loss over the real negatives only (mask_false_negatives off: only the validity mask acts)."""
    a, p, n = unit(4, 5, 20), unit(4, 5, 21), unit(4, 5, 22)
    valid = torch.tensor([True, False, True, False])
    loss = ContrastiveLoss(0.2, learnable=False, mask_false_negatives=False)
    got = loss(a, p, hard_negatives=n, negative_valid=valid)
    sim = torch.cat([a @ p.T, a @ n[valid].T], 1) / 0.2
    target = torch.arange(4)
    ref = (F.cross_entropy(sim, target) + F.cross_entropy((a @ p.T / 0.2).T, target)) / 2
    torch.testing.assert_close(got, ref)
    assert not torch.allclose(got, loss(a, p, hard_negatives=n))  # the mask changed something
