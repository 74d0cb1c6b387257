"""What a choice of Φ, ε and batch size does to the Eq. 4 gradient of empty maps — before training.

Eq. 4 gives ∂DL/∂ỹ two values per subset φ: one at y = 0 voxels, one at y = 1 voxels. An empty map
(Σ_φ y = 0) only has y = 0 voxels, where the value is ε/(P + ε)² (times the outer weight): with a small
ε and a prediction of any size it is ≈ 0 and the map teaches nothing (Sect. 2.2). :func:`explain`
builds small synthetic batches that realise the volumes of the user's data (a 1-D spatial axis per
image whose voxels hold the target, predicted and overlapping volume), asks the core
:func:`phidice.dice_gradient` for the two values, and flags every class whose empty-map gradient is
below 1 % of the y = 0 gradient of a typical non-empty map (the false-positive push-down that Eq. 5
matches ε to).

Scenes (each a batch of ``batch_size`` images, every class of an image empty or non-empty together):
- non-empty batch: B images with target volume v, predicted volume P, intersection a·min(v, P);
- typical batch with one empty image: image 0 empty (predicted volume P_empty), the others non-empty;
  under Φ = I this equals the empty image alone; under Φ = BI the empty image shares φ with the others;
- all-empty batch: B empty images (under Φ = BI such a batch behaves like Φ = I).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from phidice.core.config import DICE, JACCARD, Overlap, tversky
from phidice.core.deps import require
from phidice.core.phi import Phi, parse_phi
from phidice.diagnostics.monitor_math import FLAG_RATIO, SMALL_EPS
from phidice.epsilon import LabelSource, epsilon_stats, expected_volume
from phidice.equations import eq4, heuristic_eps_scale
from phidice.io import atomic_write
from phidice.losses.gradient import dice_gradient

__all__ = ["Explanation", "explain", "eq5_curves", "plot_epsilon_curves", "SMALL_EPS", "FLAG_RATIO"]

INTENTS = (None, "missing", "empty")
LOSSES = ("dice", "tversky", "jaccard")


def loss_index(loss: str = "dice", alpha: float = 0.5, beta: float = 0.5, gamma: float = 1.0) -> Overlap:
    """The overlap index of ``loss`` ("dice", "tversky" with α, β, γ, or "jaccard")."""
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {', '.join(map(repr, LOSSES))}; got {loss!r}")
    return {"dice": DICE, "jaccard": JACCARD}.get(loss) or tversky(alpha, beta, gamma)


@dataclass
class Explanation:
    """Eq. 4 gradient values per class (lists aligned with ``classes``), from :func:`phidice.dice_gradient`.

    nonempty_g0 / nonempty_g1: y = 0 / y = 1 voxels of a non-empty map in a batch of non-empty maps.
    empty_g0: y = 0 voxels of an empty map in a typical batch (the other B − 1 images non-empty).
    all_empty_g0: y = 0 voxels of an empty map in a batch where every image is empty.
    ratio: |empty_g0| / |nonempty_g0|; flagged: ratio < ``threshold``.
    """

    phi: str
    eps: list
    batch_size: int
    classes: list
    volume: list
    predicted_volume: list
    intersection: list
    empty_predicted_volume: list
    nonempty_g0: list
    nonempty_g1: list
    empty_g0: list
    all_empty_g0: list
    ratio: list
    all_empty_ratio: list
    flagged: list
    threshold: float = FLAG_RATIO
    empty_fraction: list | None = None
    expected_volume: list | None = None
    recommendation: dict | None = None
    notes: list = field(default_factory=list)
    plot: str | None = None
    loss: str = "dice"
    eps_scale: float = 1.0  # c of the heuristic ε = c·E[Σ_φ y] for this loss (1 for Dice)

    @property
    def any_flagged(self) -> bool:
        return any(self.flagged)

    def to_dict(self) -> dict:
        return asdict(self)

    def to_markdown(self) -> str:
        eps_text = _fmt_list(self.eps)
        lines = [
            f"Eq. 4 gradient ∂L/∂ỹ of the {self.loss} loss for Φ={self.phi}, ε={eps_text}, batch size "
            f"{self.batch_size} (reduction 'mean', from phidice.dice_gradient)",
            "",
            "| label | volume | predicted | non-empty y=1 | non-empty y=0 | empty y=0 | empty/non-empty "
            "| all-empty batch y=0 | flag |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|:---|",
        ]
        for k, c in enumerate(self.classes):
            flag = f"< {self.threshold:.0%}: empty maps barely learn" if self.flagged[k] else "ok"
            lines.append(
                f"| {c} | {self.volume[k]:.6g} | {self.predicted_volume[k]:.6g} | {self.nonempty_g1[k]:.3e} | "
                f"{self.nonempty_g0[k]:.3e} | {self.empty_g0[k]:.3e} | {self.ratio[k]:.3g} | "
                f"{self.all_empty_g0[k]:.3e} | {flag} |"
            )
        if self.empty_fraction is not None:
            lines += [
                "",
                "Fraction of empty maps in the data: "
                + ", ".join(f"label {c}: {f:.0%}" for c, f in zip(self.classes, self.empty_fraction)),
            ]
        for note in self.notes:
            lines += ["", f"- {note}"] if not lines[-1].startswith("- ") else [f"- {note}"]
        if self.recommendation is not None:
            r = self.recommendation
            lines += [
                "",
                f"**Recommendation ({r['intent']})**: Φ={r['phi']}, ε={_fmt_list(r['eps'])}, "
                f"batch size {r['batch_size']}",
                *[f"> {w}" for w in r["why"]],
            ]
        if self.plot:
            lines += ["", f"Plot: {self.plot}"]
        return "\n".join(lines)


def _fmt_list(v) -> str:
    if isinstance(v, (list, tuple)):
        if not v:
            return "[]"
        return f"{v[0]:.6g}" if len(set(v)) == 1 else "[" + ", ".join(f"{x:.6g}" for x in v) + "]"
    return f"{v:.6g}"


def explain(
    phi: str | Phi = "I",
    eps: float | Sequence[float] | torch.Tensor | str = SMALL_EPS,
    batch_size: int = 2,
    volumes: float | Sequence[float] | None = None,
    labels: LabelSource | None = None,
    num_classes: int | None = None,
    predicted_volume: float | Sequence[float] | None = None,
    empty_predicted_volume: float | Sequence[float] | None = None,
    overlap: float = 0.5,
    intent: str | None = None,
    include_background: bool = False,
    ignore_index: int | None = None,
    target_spacing: Sequence[float] | None = None,
    positives_only: bool = False,
    workers: int | None = None,
    progress: bool = False,
    plot: str | os.PathLike[str] | None = None,
    loss: str = "dice",
    alpha: float = 0.5,
    beta: float = 0.5,
    gamma: float = 1.0,
    soft: bool = False,
) -> Explanation:
    """Eq. 4 gradient magnitudes of non-empty and empty maps for a Φ, ε and batch size.

    Args:
        phi: "I", "CI", "BI" or "BCI".
        eps: ε — a float, one value per shown class, or "auto" for the heuristic ε = E[Σ_φ y]
            (:func:`phidice.estimate_epsilon` on ``labels``; the given ``volumes`` otherwise).
        batch_size: B of the synthetic batches.
        volumes: typical volume of a non-empty map per class (voxels), e.g. ``[8789]``; or
        labels: label files / arrays (anything :func:`phidice.estimate_epsilon` reads); the typical
            volume is then the mean over images containing the class, and the background class 0 is
            left out unless ``include_background``.
        predicted_volume: predicted volume of a non-empty map (default: its target volume);
            ``overlap`` a: the intersection is a·min(volume, predicted) (default ½, as in Eq. 5).
        empty_predicted_volume: predicted volume on an empty map (default: ``predicted_volume``, a
            network that still predicts a typical object there).
        intent: "missing" (maps without labels should be ignored) or "empty" (empty maps should be
            learned) adds a recommendation of Φ and ε with the reason.
        plot: a PNG path: ∂L/∂ỹ at y = 0 of an empty map vs its predicted volume for several ε (Eq. 5).
        loss: "dice", "tversky" (``alpha`` weighs false positives, ``beta`` false negatives, ``gamma`` the
            focal exponent) or "jaccard": the gradients are those of that loss, and ``eps="auto"`` is its
            heuristic ε = c·E[Σ_φ y] (:func:`phidice.equations.heuristic_eps_scale`; c = 1 for Dice).
        soft: ``labels`` are soft maps (C, *S) in [0, 1] (``soft_label=True``): the volumes are soft volumes
            Σ y (:func:`phidice.estimate_epsilon` with ``soft=True``).

    Target volumes are realised in whole voxels (rounded, at least 1); the realised values are reported.
    """
    setup = _setup(phi, batch_size, intent, overlap, volumes, labels, plot, loss, alpha, beta, gamma)
    if labels is not None:
        m = _measure_labels(
            labels,
            setup,
            num_classes=num_classes,
            ignore_index=ignore_index,
            target_spacing=target_spacing,
            positives_only=positives_only,
            workers=workers,
            progress=progress,
            include_background=include_background,
            soft=soft,
        )
    else:
        m = _measure_volumes(volumes, setup, include_background)
    scene = _scene(m, predicted_volume, empty_predicted_volume, setup.overlap)
    eps_vec = _eps_vector(eps, len(m.classes), setup.scale * np.asarray(m.expected, dtype=np.float64))
    result = _explanation(setup, m, scene, eps_vec)
    if setup.plot_path is not None:
        plot_epsilon_curves(
            setup.plot_path, scene.volume, eps_vec, m.classes, overlap=setup.overlap, index=setup.overlap_index
        )
        result.plot = str(setup.plot_path)
    return result


class _Setup(NamedTuple):
    """The arguments of :func:`explain` that say what to explain, checked and parsed once at the entry."""

    phi: Phi
    overlap_index: Overlap  # the loss's overlap index
    scale: float  # c of its heuristic ε = c·E[Σ_φ y]
    batch_size: int
    intent: str | None
    overlap: float  # a: the intersection is a·min(volume, predicted)
    loss: str
    plot_path: Path | None


def _setup(phi, batch_size, intent, overlap, volumes, labels, plot, loss, alpha, beta, gamma) -> _Setup:
    index = loss_index(loss, alpha, beta, gamma)
    batch_size = _check_args(batch_size, intent, overlap, volumes, labels)
    return _Setup(
        parse_phi(phi), index, heuristic_eps_scale(index), batch_size, intent, overlap, loss, _check_plot_path(plot)
    )


class _Scene(NamedTuple):
    """The volumes the synthetic batches realise, per shown class."""

    volume: np.ndarray  # target volume of a non-empty map, whole voxels
    predicted: np.ndarray
    empty_predicted: np.ndarray
    intersection: np.ndarray


def _scene(m: _Measured, predicted_volume, empty_predicted_volume, overlap: float) -> _Scene:
    C = len(m.classes)
    Y = np.maximum(1.0, np.round(m.volume))
    P = (
        Y.copy()
        if predicted_volume is None
        else _positive_vector(predicted_volume, "predicted_volume", C, allow_zero=True)
    )
    P_empty = (
        P.copy()
        if empty_predicted_volume is None
        else _positive_vector(empty_predicted_volume, "empty_predicted_volume", C, allow_zero=True)
    )
    return _Scene(Y, P, P_empty, overlap * np.minimum(Y, P))


def _explanation(setup: _Setup, m: _Measured, scene: _Scene, eps_vec: np.ndarray) -> Explanation:
    """The Eq. 4 values of the three scenes, their ratios, the flags, notes and the recommendation."""
    B = setup.batch_size
    g = _scene_gradients(
        setup.phi,
        setup.overlap_index,
        eps_vec,
        B,
        scene.volume,
        scene.predicted,
        scene.intersection,
        scene.empty_predicted,
    )
    ref = np.abs(g["nonempty_g0"])
    C = len(m.classes)
    ratio = np.divide(np.abs(g["empty_g0"]), ref, out=np.full(C, np.inf), where=ref > 0)
    all_ratio = np.divide(np.abs(g["all_empty_g0"]), ref, out=np.full(C, np.inf), where=ref > 0)
    flagged = ratio < FLAG_RATIO
    return Explanation(
        phi=setup.phi.value,
        eps=eps_vec.tolist(),
        batch_size=B,
        classes=m.classes,
        volume=scene.volume.tolist(),
        predicted_volume=scene.predicted.tolist(),
        intersection=scene.intersection.tolist(),
        empty_predicted_volume=scene.empty_predicted.tolist(),
        nonempty_g0=g["nonempty_g0"].tolist(),
        nonempty_g1=g["nonempty_g1"].tolist(),
        empty_g0=g["empty_g0"].tolist(),
        all_empty_g0=g["all_empty_g0"].tolist(),
        ratio=ratio.tolist(),
        all_empty_ratio=all_ratio.tolist(),
        flagged=flagged.tolist(),
        empty_fraction=m.empty_fraction,
        expected_volume=np.asarray(m.expected, dtype=np.float64).tolist(),
        recommendation=_recommend(
            setup.intent, B, setup.scale * np.asarray(m.expected_image), m.empty_fraction, setup.scale
        ),
        notes=m.notes + _notes(setup.phi, B, m.classes, m.empty_fraction, flagged),
        loss=setup.loss,
        eps_scale=setup.scale,
    )


def _check_args(batch_size, intent, overlap, volumes, labels) -> int:
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be an integer ≥ 1; got {batch_size!r}")
    if intent not in INTENTS:
        raise ValueError(f"intent must be 'missing', 'empty' or None; got {intent!r}")
    if not (isinstance(overlap, (int, float)) and 0 <= overlap <= 1):
        raise ValueError(f"overlap must be a number in [0, 1]; got {overlap!r}")
    if (volumes is None) == (labels is None):
        raise ValueError(
            "give exactly one of volumes= (typical foreground volume per class) or labels= "
            "(label files or arrays to measure it from)"
        )
    return int(batch_size)


class _Measured(NamedTuple):
    """What ``explain`` needs from the data, per shown class."""

    classes: list
    volume: np.ndarray  # typical volume of a non-empty map
    empty_fraction: list | None  # share of images without the class (None: volumes were given)
    expected: np.ndarray  # E[Σ_φ y] for the Φ and batch size (the heuristic ε)
    expected_image: np.ndarray  # E[Σ y] per image (the Φ = I heuristic ε)
    notes: list


def _measure_labels(
    labels,
    setup: _Setup,
    *,
    num_classes,
    ignore_index,
    target_spacing,
    positives_only,
    workers,
    progress,
    include_background,
    soft=False,
) -> _Measured:
    """Typical volumes, empty fractions and E[Σ_φ y] of the classes found in the label maps (the counts per
    image, Φ = I; the batch sums of ``setup``'s Φ follow from them)."""
    phi, batch_size = setup.phi, setup.batch_size
    stats = epsilon_stats(
        labels,
        num_classes=num_classes,
        phi=Phi.I,
        ignore_index=ignore_index,
        target_spacing=target_spacing,
        workers=workers,
        progress=progress,
        soft=soft,
    )
    C = stats.volume_sum.shape[0]
    classes = list(range(0 if include_background else 1, C))
    absent = [c for c in classes if stats.n_positive[c] == 0]
    notes = [f"class(es) {absent} present in no label map: left out"] if absent else []
    classes = [c for c in classes if stats.n_positive[c] > 0]
    if not classes:
        raise ValueError("the label maps contain no foreground class to explain")
    empty_fraction = [float(1 - stats.n_positive[c] / stats.n_images) for c in classes]
    expected, expected_image = (
        expected_volume(stats.volume_sum[classes], stats.n_positive[classes], stats.n_images, b, positives_only)
        for b in (batch_size if phi.sums_batch else 1, 1)
    )
    return _Measured(classes, stats.mean_positive_volume[classes], empty_fraction, expected, expected_image, notes)


def _measure_volumes(volumes, setup: _Setup, include_background: bool) -> _Measured:
    """The given typical volumes, of the foreground labels 1, 2, … (0, 1, … with ``include_background``);
    E[Σ_φ y] sums B of them when φ spans the batch."""
    vol = _positive_vector(volumes, "volumes", None)
    expected = vol * (setup.batch_size if setup.phi.sums_batch else 1)
    first = 0 if include_background else 1
    return _Measured(list(range(first, first + vol.shape[0])), vol, None, expected, vol, [])


def _notes(phi, batch_size, classes, empty_fraction, flagged) -> list[str]:
    """What Φ and B mean for empty maps, in words."""
    notes = []
    if phi.sums_batch and batch_size > 1:
        notes.append(
            f"Φ={phi.value}: an empty map shares φ with the B−1 other images; a batch whose images are "
            "all empty has the Φ=I behaviour (column 'all-empty batch')"
        )
        if empty_fraction is not None:
            worst = [f"class {c}: {f**batch_size:.1%}" for c, f in zip(classes, empty_fraction) if f > 0]
            if worst:
                notes.append("share of all-empty batches under iid sampling: " + ", ".join(worst))
    elif phi.sums_batch:
        notes.append(f"Φ={phi.value} with batch size 1 is Φ={'I' if phi.value == 'BI' else 'CI'}")
    if phi.sums_classes:
        notes.append(
            f"Φ={phi.value} sums classes inside φ: the empty image has every class empty; a per-class "
            "ε is summed over the classes of φ"
        )
    if flagged.any():
        notes.append(
            "flagged: the empty-map gradient is < 1% of the y=0 gradient of a non-empty map, so "
            "empty maps are effectively ignored (fine for missing labels, not for learning empty maps)"
        )
    return notes


def _positive_vector(value, name, C, allow_zero=False) -> np.ndarray:
    try:
        v = np.atleast_1d(np.asarray(value, dtype=np.float64))
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a number or one number per class; got {value!r}") from None
    if v.ndim != 1 or v.size == 0:
        raise ValueError(f"{name} must be a number or a 1-D sequence (one per class); got shape {v.shape}")
    if C is not None:
        if v.size == 1:
            v = np.full(C, v[0])
        elif v.size != C:
            raise ValueError(f"{name} has {v.size} values for {C} classes")
    ok = np.isfinite(v) & ((v >= 0) if allow_zero else (v > 0))
    if not ok.all():
        raise ValueError(f"{name} must be finite and {'≥ 0' if allow_zero else '> 0'} (voxels); got {value!r}")
    return v


def _eps_vector(eps, C, expected) -> np.ndarray:
    """ε per shown class: given, or "auto" for the heuristic E[Σ_φ y]."""
    if isinstance(eps, str):
        if eps.strip().lower() != "auto":
            raise ValueError(f"eps must be a number, one per class, or 'auto'; got {eps!r}")
        return np.asarray(expected, dtype=np.float64)
    if isinstance(eps, bool):
        raise TypeError("eps must be a number, one number per class, or 'auto'; got bool")
    return _positive_vector(eps, "eps", C, allow_zero=True)


def _segment_batch(Y, P, I, L, empty: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """One image (C, L): y = 1 on the first Y voxels with ỹ = I/Y there (Σ y·ỹ = I), then the
    remaining predicted volume P − I spread over the next ⌈P − I⌉ voxels; empty: y ≡ 0 and ỹ = P
    spread over ⌈P⌉ voxels."""
    C = len(Y)
    y = torch.zeros(C, L, dtype=torch.float64)
    p = torch.zeros(C, L, dtype=torch.float64)
    for c in range(C):  # C is a handful of classes; this only builds the synthetic scene
        if empty:
            n = math.ceil(P[c])
            if n:
                p[c, :n] = P[c] / n
            continue
        y_n = int(Y[c])
        y[c, :y_n] = 1.0
        p[c, :y_n] = I[c] / y_n
        rest = P[c] - I[c]
        n = math.ceil(rest - 1e-12) if rest > 0 else 0
        if n:
            p[c, y_n : y_n + n] = rest / n
    return p, y


def _scene_gradients(phi, index: Overlap, eps_vec, B, Y, P, I, P_empty) -> dict:
    L = int(max(Y.max() + math.ceil(max(0.0, (P - I).max())), math.ceil(P_empty.max()))) + 1
    p_ne, y_ne = _segment_batch(Y, P, I, L, empty=False)
    p_e, y_e = _segment_batch(Y, P_empty, I, L, empty=True)
    eps_t = torch.as_tensor(eps_vec, dtype=torch.float64)

    def run(images):
        probs = torch.stack([im[0] for im in images])
        target = torch.stack([im[1] for im in images])
        out = dice_gradient(probs, target, phi=phi, eps=eps_t, include_background=True, overlap=index)
        assert out.g0 is not None and out.g1 is not None  # the L1 relaxation (not squared) has both
        return out.g0[0].numpy(), out.g1[0].numpy()

    ne, e = (p_ne, y_ne), (p_e, y_e)
    g0_ne, g1_ne = run([ne] * B)
    g0_all, _ = run([e] * B)
    g0_mixed = run([e] + [ne] * (B - 1))[0] if B > 1 else g0_all
    return dict(nonempty_g0=g0_ne, nonempty_g1=g1_ne, empty_g0=g0_mixed, all_empty_g0=g0_all)


def _recommend(intent, B, expected, empty_fraction, scale: float = 1.0) -> dict | None:
    """Φ and ε for the intent; ``expected`` is the Φ=I heuristic ε, c·E[Σy] per image (c = ``scale``)."""
    if intent is None:
        return None
    if intent == "missing":
        return dict(
            intent="missing",
            phi="I",
            eps=SMALL_EPS,
            batch_size=B,
            why=[
                "Φ=I with a negligible ε: a map without labels has Σ_φ y = 0, so its gradient ε/(P+ε)² ≈ 0 and the "
                "unlabelled class is ignored with no special loss (Sect. 2.2).",
                "Avoid Φ=BI with B>1 and a large ε: both push missing (unlabelled) structures towards empty "
                "predictions.",
            ],
        )
    eps_heur = [float(e) for e in np.asarray(expected, dtype=np.float64)]
    heur = _fmt_list(eps_heur)
    rule = "E[Σy]" if scale == 1 else f"{scale:.3g}·E[Σy]"
    no_empty = empty_fraction is not None and not any(f > 0 for f in empty_fraction)
    caveat = " (no empty maps found in these labels)" if no_empty else ""
    if B > 1:
        return dict(
            intent="empty",
            phi="BI",
            eps=SMALL_EPS,
            batch_size=B,
            alternative=dict(phi="I", eps=eps_heur, batch_size=B),
            why=[
                f"Φ=BI with B={B}: an empty map shares φ with the rest of the batch and gets the same push "
                f"towards 0 as false positives there; or, if B must be 1, Φ=I with ε ≈ {rule} = {heur}"
                f"{caveat}.",
                f"With Φ=I and a small ε an empty map's gradient ε/(P+ε)² vanishes; ε ≈ {rule} makes it "
                "match a non-empty map's at ~50% overlap (Eq. 5).",
            ],
        )
    return dict(
        intent="empty",
        phi="I",
        eps=eps_heur,
        batch_size=B,
        why=[
            f"Φ=I with ε ≈ {rule} = {heur}: with B=1 Φ=BI equals Φ=I, so ε must carry empty maps{caveat}.",
            f"Eq. 5: an empty map's y=0 gradient equals a non-empty map's at ~50% overlap when ε ≈ {rule}; a small ε "
            "leaves empty maps with gradient ≈ 0.",
        ],
    )


# ----------------------------------------------------------------------------------------- plot
def _check_plot_path(plot) -> Path | None:
    if plot is None:
        return None
    path = Path(plot)
    if path.is_dir():
        raise ValueError(f"plot must be a file path (.png); got the directory {str(path)!r}")
    if path.suffix.lower() != ".png":
        raise ValueError(f"plot must be a .png path; got {str(path)!r}")
    if not path.parent.exists():
        raise FileNotFoundError(f"plot: directory {str(path.parent)!r} does not exist")
    return path


def eq5_curves(P, volume, eps, overlap: float = 0.5, index: Overlap = DICE):
    """The two sides of Eq. 5 for one φ of weight 1, as functions of the predicted volume P: the Eq. 4 value
    at y = 0 of an empty map and of a non-empty map of volume Y with intersection I = a·min(Y, P). Dice: empty
    N = ε, D = P + ε (ε/(P + ε)²); non-empty N = 2I + ε, D = Y + P + ε; other indices by their coefficients."""
    P = np.asarray(P, dtype=np.float64)
    inter = overlap * np.minimum(volume, P)

    def g0(I, Y):
        N = index.a * I + eps
        D = index.b_i * I + index.b_p * P + index.b_y * Y + eps
        return eq4(N, D, 1.0, index)[1]

    return g0(0.0, 0.0), g0(inter, volume)


def plot_epsilon_curves(path, volumes, eps, classes, overlap: float = 0.5, index: Overlap = DICE) -> Path:
    """Eq. 5 picture, one panel per class (first 4): ∂L_φ/∂ỹ at y = 0 of an empty map, ε/(P + ε)²,
    against its predicted volume P for several ε, beside a non-empty map's (2I + ε₀)/(Y + P + ε₀)²
    with I = a·min(Y, P) and a negligible ε₀. One subset φ with weight 1. Written atomically."""
    figure = require("matplotlib.figure", "plots", "the Eq. 5 plot")
    scale = heuristic_eps_scale(index)
    path = _check_plot_path(path)
    volumes = np.atleast_1d(np.asarray(volumes, dtype=np.float64))
    eps = np.broadcast_to(np.atleast_1d(np.asarray(eps, dtype=np.float64)), volumes.shape)
    n = min(4, len(classes))
    fig = figure.Figure(figsize=(4.6 * n, 3.8))
    axes = fig.subplots(1, n, squeeze=False)
    for k, ax in enumerate(axes[0]):
        v = float(volumes[k])
        P = np.logspace(np.log10(v) - 3, np.log10(v) + 2, 200)
        h, c = scale * v, ("" if scale == 1 else f"{scale:.3g}·")
        candidates = {SMALL_EPS: "ε=1e-5", h / 10: f"ε={c}v̂/10", h: f"ε={c}v̂ (heuristic)", 10 * h: f"ε=10·{c}v̂"}
        candidates.setdefault(float(eps[k]), f"ε={eps[k]:.3g} (chosen)")
        if float(eps[k]) in candidates and "chosen" not in candidates[float(eps[k])]:
            candidates[float(eps[k])] += " (chosen)"
        for e, label in sorted(candidates.items()):
            ax.loglog(P, eq5_curves(P, v, e, overlap, index)[0], label=label, lw=2.2 if "chosen" in label else 1.2)
        ax.loglog(P, eq5_curves(P, v, SMALL_EPS, overlap, index)[1], "k--", label="non-empty map, Y=v̂")
        ax.axvline(v, color="grey", lw=0.8, ls=":")
        ax.set_title(f"label {classes[k]}: v̂ = {v:.4g} voxels")
        ax.set_xlabel("predicted volume P on the empty map (voxels)")
        ax.set_ylabel("∂L_φ/∂ỹ at y=0 (one φ)")
        ax.legend(fontsize=7)
    fig.tight_layout()
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=110))
    return path
