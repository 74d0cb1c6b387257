"""GradientMonitor against a float64 computation by hand: autograd's ∂L/∂ỹ summed over the voxels of every
subset φ, the subsets enumerated one by one, for every Φ, ε tiny and ε = E[Σy], masks, ignore_index,
weights, Tversky/Jaccard and the missing-label losses; the fused path; explain; compile; bad input."""

from __future__ import annotations

import math
import warnings

import pytest
import torch

import phidice
from phidice.diagnostics.explain import _scene_gradients
from phidice.diagnostics.monitor import GradientMonitor, advice_lines
from phidice.missing.functional import leaf_keep, merge_probabilities

PHIS = ["I", "CI", "BI", "BCI"]
B, C, S = 4, 3, (6, 5)


def batch(seed=0, C=C):
    """Probabilities (float64) and labels where class 2 is absent from images 0-1 and image 3 is all background."""
    g = torch.Generator().manual_seed(seed)
    probs = torch.softmax(torch.randn(B, C, *S, dtype=torch.float64, generator=g) * 2, 1)
    labels = torch.randint(0, C, (B, *S), generator=g)
    labels[:2][labels[:2] == 2] = 0
    labels[3] = 0
    return probs, labels


def subsets(phi: str, Bn: int, Cn: int) -> list[list[tuple[int, int]]]:
    """The (b, c) entries of every φ ∈ Φ."""
    if phi == "I":
        return [[(b, c)] for b in range(Bn) for c in range(Cn)]
    if phi == "CI":
        return [[(b, c) for c in range(Cn)] for b in range(Bn)]
    if phi == "BI":
        return [[(b, c) for b in range(Bn)] for c in range(Cn)]
    return [[(b, c) for b in range(Bn) for c in range(Cn)]]


def by_hand(phi, grad, probs, y, m, keep, first):
    """The monitor's values from autograd's gradient and the dense tensors (scored channels from ``first``),
    φ by φ: overall and per class."""
    g = grad.abs()[:, first:].flatten(2).sum(-1)
    P = (probs * m)[:, first:].flatten(2).sum(-1)
    Y = (y * m)[:, first:].flatten(2).sum(-1)
    I = (probs * y * m)[:, first:].flatten(2).sum(-1)
    kept = keep[:, first:]
    Bn, Cn = g.shape

    def values(column):
        n = n_empty = grad_all = grad_empty = pred = pred_other = dice = 0.0
        for phi_entries in subsets(phi, Bn, Cn):
            entries = [e for e in phi_entries if kept[e]]
            mine = [e for e in entries if column is None or e[1] == column]
            if not mine:
                continue
            empty = sum(float(Y[e]) for e in entries) == 0
            n += 1
            grad_all += sum(float(g[e]) for e in mine)
            if empty:
                n_empty += 1
                grad_empty += sum(float(g[e]) for e in mine)
                pred += sum(float(P[e]) for e in mine)
            else:
                pred_other += sum(float(P[e]) for e in mine)
                dice += 2 * sum(float(I[e]) for e in entries) / sum(float(P[e] + Y[e]) for e in entries)
        return dict(
            empty_subset_fraction=n_empty / n,
            empty_gradient_share=grad_empty / grad_all,
            empty_predicted_volume=pred / n_empty if n_empty else math.nan,
            nonempty_predicted_volume=pred_other / (n - n_empty) if n > n_empty else math.nan,
            nonempty_dice=dice / (n - n_empty) if n > n_empty else math.nan,
        )

    def maps(column):
        entries = [(b, c) for b in range(Bn) for c in range(Cn) if kept[b, c] and (column is None or c == column)]
        empty = [e for e in entries if float(Y[e]) == 0]
        total = sum(float(g[e]) for e in entries)
        return dict(
            empty_map_fraction=len(empty) / len(entries),
            empty_map_gradient_share=sum(float(g[e]) for e in empty) / total,
            empty_map_predicted_volume=sum(float(P[e]) for e in empty) / len(empty) if empty else math.nan,
        )

    return ({**values(None), **maps(None)}, {first + c: {**values(c), **maps(c)} for c in range(Cn)})


def check(result, expected):
    overall, per_class = expected
    for key, want in overall.items():
        assert result[key] == pytest.approx(want, rel=1e-9, abs=1e-15, nan_ok=True), key
    for c, values in per_class.items():
        for key, want in values.items():
            assert result["per_class"][c][key] == pytest.approx(want, rel=1e-9, abs=1e-15, nan_ok=True), (c, key)


def run(loss, probs, target, *args, **kw):
    """Autograd ∂L/∂ỹ of one call of ``loss`` that also feeds a fresh monitor; (gradient, monitor result)."""
    monitor = GradientMonitor(loss, log=False)
    p = probs.clone().requires_grad_()
    (grad,) = torch.autograd.grad(loss(p, target, *args, monitor=monitor, **kw), p)
    return grad, monitor.compute()


def one_hot(labels, Cn=C):
    return torch.nn.functional.one_hot(labels, Cn).movedim(-1, 1).to(torch.float64)


def expected_sum_y(labels):
    return float(one_hot(labels)[:, 1:].flatten(2).sum(-1).mean())


@pytest.mark.parametrize("phi", PHIS)
@pytest.mark.parametrize("eps", ["tiny", "heuristic"])
@pytest.mark.parametrize("include_background", [True, False])
def test_values_equal_autograd_by_hand(phi, eps, include_background):
    probs, labels = batch()
    e = 1e-5 if eps == "tiny" else expected_sum_y(labels)
    loss = phidice.DiceLoss(phi=phi, eps=e, activation=None, include_background=include_background)
    grad, result = run(loss, probs, labels)
    ones = torch.ones(B, 1, *S, dtype=torch.float64)
    check(
        result,
        by_hand(
            phi, grad, probs, one_hot(labels), ones, torch.ones(B, C, dtype=torch.bool), 0 if include_background else 1
        ),
    )


@pytest.mark.parametrize("phi", PHIS)
@pytest.mark.parametrize(
    "options",
    [
        dict(eps=1.0, class_weights=[0.2, 1.0, 3.0]),
        dict(eps=1e-5, eps_empty=[1.0, 30.0, 12.0], reduction="sum"),
        dict(eps=2.0, empty="skip"),
        dict(eps=0.5, overlap=phidice.tversky(0.3, 0.7, 1.5)),
        dict(eps=0.5, overlap=phidice.JACCARD),
    ],
    ids=["weights", "eps_empty-sum", "skip", "focal-tversky", "jaccard"],
)
def test_options_equal_autograd_by_hand(phi, options):
    probs, labels = batch(1)
    loss = phidice.DiceLoss(phi=phi, activation=None, **options)
    grad, result = run(loss, probs, labels)
    ones = torch.ones(B, 1, *S, dtype=torch.float64)
    check(result, by_hand(phi, grad, probs, one_hot(labels), ones, torch.ones(B, C, dtype=torch.bool), 0))


@pytest.mark.parametrize("phi", PHIS)
def test_ignore_index_and_masks(phi):
    probs, labels = batch(2)
    g = torch.Generator().manual_seed(5)
    ignored = torch.rand(B, *S, generator=g) < 0.3
    with_ignore = labels.masked_fill(ignored, 7)
    loss = phidice.DiceLoss(phi=phi, eps=1e-5, activation=None, ignore_index=7)
    grad, result = run(loss, probs, with_ignore)
    valid = (~ignored).unsqueeze(1).to(torch.float64)
    keep = torch.ones(B, C, dtype=torch.bool)
    check(result, by_hand(phi, grad, probs, one_hot(labels), valid, keep, 0))
    # a per-channel mask (B, C, *S) over a one-hot target: N differs per channel
    mask = (torch.rand(B, C, *S, generator=g) < 0.7).to(torch.float64)
    loss = phidice.DiceLoss(phi=phi, eps=3.0, activation=None)
    grad, result = run(loss, probs, one_hot(labels), mask)
    check(result, by_hand(phi, grad, probs, one_hot(labels), mask, keep, 0))


def annotated_rows():
    annotated = torch.ones(B, C, dtype=torch.bool)
    annotated[0, 2] = annotated[1, 2] = annotated[3, 1] = False
    return annotated


@pytest.mark.parametrize("phi", PHIS)
def test_leaf_dice_with_annotated(phi):
    probs, labels = batch(3)
    annotated = annotated_rows()
    labels[3] = 0  # image 3's class 1 is unannotated: labelled background
    loss = phidice.LeafDiceLoss(phi=phi, eps=1e-5, activation=None)
    grad, result = run(loss, probs, labels, annotated)
    ones = torch.ones(B, 1, *S, dtype=torch.float64)
    check(result, by_hand(phi, grad, probs, one_hot(labels), ones, leaf_keep(annotated, None), 0))
    assert result["unannotated_fraction"] == pytest.approx(3 / (B * C))
    assert result["per_class"][2]["unannotated_fraction"] == pytest.approx(2 / B)


@pytest.mark.parametrize("phi", PHIS)
@pytest.mark.parametrize("include_background", [True, False])
def test_marginal_dice_in_merged_probabilities(phi, include_background):
    """The marginal Dice's ỹ are the merged probabilities: autograd w.r.t. them, kept entries = annotated."""
    probs, labels = batch(4)
    annotated = annotated_rows()
    loss = phidice.MarginalDiceLoss(phi=phi, eps=2.0, activation=None, include_background=include_background)
    _, result = run(loss, probs, labels, annotated)
    merged = merge_probabilities(probs, annotated).detach().requires_grad_()
    y = one_hot(labels)
    stats = phidice.compute_stats(merged, y, activation=None)
    first = 0 if include_background else 1
    value = phidice.loss_from_stats(
        phidice.DiceStats(*(t[:, first:] for t in stats)),
        keep=annotated[:, first:],
        num_channels=C,
        phi=phi,
        eps=2.0,
        activation=None,
        include_background=include_background,
    )
    (grad,) = torch.autograd.grad(value, merged)
    check(result, by_hand(phi, grad, merged.detach(), y, torch.ones(B, 1, *S, dtype=torch.float64), annotated, first))


@pytest.mark.parametrize("phi", ["I", "BI"])
def test_fused_path_and_compound_loss_give_the_reference_values(phi):
    """Logits through the fused kernels, the dense path and the Dice + CE loss: the same sums, the same values."""
    probs, labels = batch(5)
    labels[labels == 2] = 0  # class 2 empty in the whole batch: an empty φ under Φ = BI too
    logits = torch.log(probs).float().requires_grad_()
    results = []
    for loss in (
        phidice.DiceLoss(phi=phi, fused=True),
        phidice.DiceLoss(phi=phi, fused=False),
        phidice.DiceCELoss(phi=phi, fused=False),
    ):
        monitor = GradientMonitor(loss, log=False)
        loss(logits, labels, monitor=monitor).backward()
        results.append(monitor.compute())
    assert results[0]["empty_subset_fraction"] > 0
    for other in results[1:]:
        for key in ("empty_subset_fraction", "empty_gradient_share", "empty_predicted_volume", "nonempty_dice"):
            assert other[key] == pytest.approx(results[0][key], rel=1e-5), key


@pytest.mark.parametrize("kind", ["Leaf", "Marginal"])
def test_missing_label_compound_losses_report_their_dice_sums(kind):
    """LeafDiceCELoss / MarginalDiceCELoss with a monitor: the loss is the one without it, and the monitor holds
    the values of the Dice-only loss on the same batch (its Dice term's sums)."""
    probs, labels = batch(8)
    annotated = annotated_rows()
    labels[3] = 0
    logits = torch.log(probs).float()
    dice = getattr(phidice, f"{kind}DiceLoss")(phi="I", eps=1e-5, fused=False)
    compound = getattr(phidice, f"{kind}DiceCELoss")(phi="I", eps=1e-5, fused=False)
    alone = GradientMonitor(dice, log=False)
    dice(logits, labels, annotated, monitor=alone)
    monitor = GradientMonitor(compound, log=False)
    value = compound(logits, labels, annotated, monitor=monitor)
    assert float(value) == float(compound(logits, labels, annotated))
    a, b = monitor.compute(), alone.compute()
    assert a["updates"] == 1
    for key in ("empty_subset_fraction", "empty_gradient_share", "empty_predicted_volume", "unannotated_fraction"):
        assert a[key] == pytest.approx(b[key], rel=1e-6), key


def test_accumulates_over_batches_and_update_equals_the_hook():
    """Two updates sum their states (ratios of sums); update() gives what the loss's own call gives."""
    probs, labels = batch(6)
    loss = phidice.DiceLoss(phi="I", eps=1e-5, activation=None)
    both = GradientMonitor(loss, log=False)
    loss(probs[:2], labels[:2], monitor=both)
    loss(probs[2:], labels[2:], monitor=both)
    one = GradientMonitor(loss, log=False)
    one.update(probs, labels)  # Φ = I with mean weights: halves give the same shares as the whole
    a, b = both.compute(), one.compute()
    assert a["updates"] == 2 and b["updates"] == 1
    for key in ("empty_subset_fraction", "empty_gradient_share", "empty_predicted_volume", "nonempty_dice"):
        assert a[key] == pytest.approx(b[key], rel=1e-9), key
    both.reset()
    with pytest.raises(RuntimeError, match="before any update"):
        both.compute()


def test_attach_records_every_call_until_detach():
    probs, labels = batch(7)
    loss = phidice.DiceLoss(phi="BI", activation=None)
    monitor = GradientMonitor(loss, log=False, attach=True)
    loss(probs, labels)
    loss(probs, labels)
    monitor.detach()
    loss(probs, labels)
    assert monitor.compute()["updates"] == 2


def test_explain_on_the_same_batch():
    """explain's empty-map and non-empty-map y=0 / y=1 values, put on the voxels of its own scene, give the
    monitor's gradient share on that scene."""
    Y, P, inter, L, phi, eps = 12.0, 15.0, 6.0, 40, "BI", 3.0
    g = _scene_gradients(
        phidice.parse_phi(phi),
        phidice.DICE,
        torch.tensor([eps]).numpy(),
        3,
        *(torch.tensor([v], dtype=torch.float64).numpy() for v in (Y, P, inter)),
        torch.tensor([P], dtype=torch.float64).numpy(),
    )
    probs = torch.zeros(3, 1, L, dtype=torch.float64)
    target = torch.zeros(3, 1, L, dtype=torch.float64)
    probs[0, 0, :15] = 1.0  # the empty image: P spread over 15 voxels
    for b in (1, 2):
        target[b, 0, :12] = 1.0
        probs[b, 0, :12] = 0.5
        probs[b, 0, 12:21] = 1.0
    loss = phidice.DiceLoss(phi="I", eps=eps, activation=None)
    monitor = GradientMonitor(loss, log=False)
    loss(probs, target, monitor=monitor)
    scene = _scene_gradients(
        phidice.parse_phi("I"),
        phidice.DICE,
        torch.tensor([eps]).numpy(),
        3,
        *(torch.tensor([v], dtype=torch.float64).numpy() for v in (Y, P, inter)),
        torch.tensor([P], dtype=torch.float64).numpy(),
    )
    empty = abs(scene["empty_g0"][0]) * L
    nonempty = 2 * (abs(scene["nonempty_g0"][0]) * (L - Y) + abs(scene["nonempty_g1"][0]) * Y)
    assert monitor.compute()["empty_gradient_share"] == pytest.approx(empty / (empty + nonempty), rel=1e-9)
    assert g["empty_g0"][0] != scene["empty_g0"][0]  # Φ = BI shares φ: the check above depends on Φ


def test_advice_flags_ignored_empty_maps_and_recommends_eq5():
    probs, labels = batch(8)
    loss = phidice.DiceLoss(phi="I", eps=1e-5, activation=None)
    monitor = GradientMonitor(loss, spacing=(2.0, 2.0))
    loss(probs, labels, monitor=monitor)
    with pytest.warns(RuntimeWarning, match="ignored"):
        first = monitor.epoch_end()
    lines = monitor.advise(first)
    line = next(x for x in lines if x.startswith("class 2"))
    assert "ignored" in line and "Φ=BI" in line and f"E[Σy] = {first['per_class'][2]['expected_volume']:.4g}" in line
    assert "ml" in line and first["empty_predicted_volume_ml"] == pytest.approx(first["empty_predicted_volume"] * 0.004)
    pushed = advice_lines(first, None, phidice.DiceLoss(phi="BI").config)
    assert pushed  # the wording depends on the numbers, not on the config alone
    big = GradientMonitor(phidice.DiceLoss(phi="I", eps=expected_sum_y(labels), activation=None), log=False)
    big.update(probs, labels)
    line = next(x for x in big.advise() if x.startswith("class 2"))
    assert "pushes them towards empty" in line and "LeafDiceLoss" in line


def test_log_once_per_epoch_and_opt_out(caplog):
    probs, labels = batch(9)
    loss = phidice.DiceLoss(phi="I", eps=expected_sum_y(labels), activation=None)
    monitor = GradientMonitor(loss, log=False)
    monitor.update(probs, labels)
    with caplog.at_level("INFO", logger="phidice.monitor"):
        monitor.epoch_end()
    assert not caplog.records
    monitor.log = True
    monitor.update(probs, labels)
    with caplog.at_level("INFO", logger="phidice.monitor"):
        monitor.epoch_end()
    assert len(caplog.records) == 1 and "class 2" in caplog.records[0].getMessage()


@pytest.mark.slow  # ~13 s of tracing on 2 cores: make test-all
def test_compile_aot_eager():
    """The loss call that feeds the monitor compiles as one graph (aot_eager, fullgraph) and gives the eager
    values and gradient; two compiled steps accumulate."""
    probs, labels = batch(10)
    logits = torch.log(probs).float()
    loss = phidice.DiceLoss(phi="I", eps=1e-5, fused=False)
    eager, compiled = GradientMonitor(loss, log=False), GradientMonitor(loss, log=False)

    def step(x, y, monitor):
        return loss(x, y, monitor=monitor)

    x_eager, x_compiled = logits.clone().requires_grad_(), logits.clone().requires_grad_()
    for _ in range(2):
        step(x_eager, labels, eager).backward()
    torch._dynamo.reset()
    fn = torch.compile(step, backend="aot_eager", fullgraph=True)
    for _ in range(2):
        fn(x_compiled, labels, compiled).backward()
    torch.testing.assert_close(x_compiled.grad, x_eager.grad)
    a, b = eager.compute(), compiled.compute()
    assert b["updates"] == 2
    for key in ("empty_subset_fraction", "empty_gradient_share", "empty_predicted_volume", "nonempty_dice"):
        assert b[key] == pytest.approx(a[key], rel=1e-6), key


def test_bad_input():
    with pytest.raises(TypeError, match="loss must be a phidice Dice-family loss"):
        GradientMonitor(torch.nn.CrossEntropyLoss())
    with pytest.raises(TypeError, match="MarginalCrossEntropyLoss"):
        GradientMonitor(phidice.MarginalCrossEntropyLoss())
    with pytest.raises(ValueError, match="reduction='none'"):
        GradientMonitor(phidice.DiceLoss(reduction="none"))
    with pytest.raises(ValueError, match="squared=True"):
        GradientMonitor(phidice.DiceLoss(squared=True))
    with pytest.raises(ValueError, match="spacing"):
        GradientMonitor(phidice.DiceLoss(), spacing=(1.0, -2.0))
    probs, labels = batch(11)
    loss = phidice.DiceLoss(activation=None)
    monitor = GradientMonitor(loss, log=False)
    loss(probs, labels, monitor=monitor)
    wider, _ = batch(11, C=4)
    with pytest.raises(ValueError, match="4 channels .* earlier updates had 3"):
        loss(wider, labels, monitor=monitor)
    with pytest.raises(ValueError, match="target shape"):
        monitor.update(probs, labels[:, :3])
    with pytest.raises(ValueError, match="built on this loss"):
        phidice.DiceLoss(activation=None)(probs, labels, monitor=monitor)
    with pytest.raises(ValueError, match="annotated is for the missing-label losses"):
        monitor.update(probs, labels, torch.ones(B, C, dtype=torch.bool))


TARGET_ONLY = ("empty_subset_fraction", "expected_volume", "empty_map_fraction")
READS_PREDICTIONS = (
    "empty_gradient_share",
    "empty_predicted_volume",
    "nonempty_predicted_volume",
    "nonempty_dice",
    "empty_map_gradient_share",
    "empty_map_predicted_volume",
)


@pytest.mark.parametrize("special, fused", [("nan", False), ("+inf", False), ("nan", True)])
def test_non_finite_logits_give_nan_values_and_no_advice(special, fused):
    """A NaN logit (or +Inf under the softmax) in one batch: every value that reads the predictions is NaN
    until the next reset, overall and per class (never a number that looks fine), the targets' own values are
    those of the same targets with finite logits, advise() gives no advice, the next epoch is finite again."""
    g = torch.Generator().manual_seed(3)
    logits = torch.randn(B, C, *S, generator=g)
    _, labels = batch(5)
    bad = logits.clone()
    bad[2, 1, 3, 3] = float(special)
    loss = phidice.DiceLoss(phi="I", fused=fused)
    monitor, finite = GradientMonitor(loss, log=False), GradientMonitor(loss, log=False)
    for x, m in ((logits, monitor), (bad, monitor), (logits, finite), (logits, finite)):
        loss(x, labels, monitor=m)
    got, want = monitor.compute(), finite.compute()
    for r, w in [(got, want), *((got["per_class"][c], want["per_class"][c]) for c in range(C))]:
        for key in READS_PREDICTIONS:
            assert math.isnan(r[key]), key
        for key in TARGET_ONLY:
            assert r[key] == pytest.approx(w[key]), key
    assert got["empty_subset_fraction"] > 0 and math.isfinite(want["empty_gradient_share"])
    lines = monitor.advise()
    assert len(lines) == C and all("not finite" in line and "no advice" in line for line in lines), lines
    assert not any("use" in line for line in lines)
    monitor.log = True
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a NaN epoch is logged, not flagged as "ignored"
        assert math.isnan(monitor.epoch_end()["nonempty_dice"])
    loss(logits, labels, monitor=monitor)
    again = monitor.compute()
    assert all(math.isfinite(again[k]) for k in READS_PREDICTIONS) and "not finite" not in " ".join(monitor.advise())
    assert math.isnan(monitor.history[0]["nonempty_dice"])  # the history keeps the NaN epoch


def test_minus_inf_logit_is_a_zero_probability():
    """−Inf is a valid logit: the values stay finite and equal those of a very negative finite logit."""
    g = torch.Generator().manual_seed(4)
    logits = torch.randn(B, C, *S, generator=g, dtype=torch.float64)
    _, labels = batch(6)
    low, neg = logits.clone(), logits.clone()
    low[1, 2, 0, 0], neg[1, 2, 0, 0] = -1e4, float("-inf")
    results = []
    for x in (low, neg):
        monitor = GradientMonitor(phidice.DiceLoss(phi="BI"), log=False)
        monitor.update(x, labels)
        results.append(monitor.compute())
    for key in READS_PREDICTIONS + TARGET_ONLY:
        assert results[1][key] == pytest.approx(results[0][key], rel=1e-12, nan_ok=True), key


def test_check_finite_raises_before_anything_is_recorded():
    g = torch.Generator().manual_seed(5)
    logits = torch.randn(B, C, *S, generator=g)
    _, labels = batch(7)
    loss = phidice.DiceLoss(check_finite=True)
    monitor = GradientMonitor(loss, log=False)
    loss(logits, labels, monitor=monitor)
    before = monitor.compute()
    bad = logits.clone()
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="check_finite"):
        loss(bad, labels, monitor=monitor)
    assert monitor.updates == 1 and monitor.compute() == before


@pytest.mark.parametrize(
    "loss, call, match",
    [
        (phidice.DiceLoss(), lambda m, x, y: m.update(x[:, :, 0, 0], y[:, 0, 0]), "at least one spatial dim"),
        (phidice.DiceLoss(), lambda m, x, y: m.update(x, y[:1]), "target batch size 1 does not match"),
        (phidice.DiceLoss(), lambda m, x, y: m.update(x, y[:, None, None]), r"target shape \(4, 1, 1, 6, 5\)"),
        (phidice.DiceLoss(), lambda m, x, y: m.update(x, y, mask=torch.ones(B, 2, *S)), "mask shape"),
        (phidice.DiceCELoss(), lambda m, x, y: m.update(x[:, :2], y), r"labels must lie in \[0, 1\]"),
        (
            phidice.LeafDiceLoss(),
            lambda m, x, y: m.update(x, y, torch.ones(B, C - 1, dtype=torch.bool)),
            r"annotated must have shape \(B, C\) = \(4, 3\)",
        ),
        (phidice.DiceLoss(), lambda m, x, y: m.update(x, y.double() + 0.5), "non-integer values"),
    ],
)
def test_shapes_the_loss_refuses_leave_the_monitor_unchanged(loss, call, match):
    """What the loss refuses, the monitor refuses with the loss's message, and its sums stay as they were."""
    g = torch.Generator().manual_seed(6)
    logits = torch.randn(B, C, *S, generator=g)
    _, labels = batch(8)
    monitor = GradientMonitor(loss, log=False)
    if isinstance(loss, phidice.LeafDiceLoss):
        monitor.update(logits, labels, torch.ones(B, C, dtype=torch.bool))
    else:
        monitor.update(logits, labels)
    before = monitor.compute()
    with pytest.raises(ValueError, match=match):
        call(monitor, logits, labels)
    assert monitor.updates == 1 and monitor.compute() == before


@pytest.mark.parametrize("loss", [phidice.dice_loss, "DiceLoss", torch.nn.BCEWithLogitsLoss()])
def test_a_loss_that_is_not_a_phidice_module_is_named(loss):
    with pytest.raises(TypeError, match="loss must be a phidice Dice-family loss module .* got "):
        GradientMonitor(loss)
