"""The peer oracle rows: every configuration of MONAI or nnU-Net that phidice is held to, in one table.

A :class:`Row` is one oracle case: the peer's keyword arguments, phidice's, and the two cells of its line in
docs/mapping.md. The oracle tests (tests/losses/test_oracles.py, tests/losses/test_overlaps.py,
tests/metrics/test_reference_libraries.py) are parametrised by these rows, and
tests/losses/test_oracle_table.py holds docs/mapping.md's tables to them, line for line. A :class:`Note` is
a line of a table that a dedicated test covers (named in its text). Adding a peer mapping is one ``Row``
here (and its line in docs/mapping.md, which the table test prints when it is missing).
"""

from __future__ import annotations

from typing import NamedTuple


class Row(NamedTuple):
    id: str
    peer: dict
    phidice: dict
    doc: tuple[str, str] | None = None  # the peer's and phidice's cells in docs/mapping.md


class Note(NamedTuple):
    id: str
    doc: tuple[str, str]


class Table(NamedTuple):
    heading: str  # the docs/mapping.md section ("## …") whose table lists the rows; "" for none
    peer: str
    rows: list

    def params(self) -> list[tuple[str, dict, dict]]:
        """(id, peer kwargs, phidice kwargs) of the oracle rows, for ``pytest.mark.parametrize``."""
        return [(r.id, dict(r.peer), dict(r.phidice)) for r in self.rows if isinstance(r, Row)]

    def lines(self) -> list[str]:
        """The table's lines of docs/mapping.md, in order."""
        return [f"| {r.id} | {r.doc[0]} | {r.doc[1]} |" for r in self.rows if r.doc is not None]


IGNORE = 255

MONAI_DICE = Table(
    heading="MONAI `DiceLoss`",
    peer="monai.losses.DiceLoss",
    rows=[
        Row(
            "monai-default-image",
            dict(softmax=True, to_onehot_y=True),
            dict(phi="I", eps=1e-05),
            doc=(
                "`DiceLoss(softmax=True, to_onehot_y=True)`",
                '`DiceLoss(phi="I", eps=1e-5)` (labels given as integers; no `to_onehot_y` needed)',
            ),
        ),
        Row(
            "monai-batch",
            dict(softmax=True, to_onehot_y=True, batch=True),
            dict(phi="BI", eps=1e-05),
            doc=("`batch=True`", '`phi="BI"`'),
        ),
        Row(
            "monai-smooth-nr-dr",
            dict(softmax=True, to_onehot_y=True, smooth_nr=0.3, smooth_dr=2.0),
            dict(phi="I", eps_nr=0.3, eps_dr=2.0),
            doc=("`smooth_nr=a, smooth_dr=b`", "`eps_nr=a, eps_dr=b`"),
        ),
        Row(
            "monai-batch-smooth-nr-dr",
            dict(softmax=True, to_onehot_y=True, batch=True, smooth_nr=0.0, smooth_dr=0.001),
            dict(phi="BI", eps_nr=0.0, eps_dr=0.001),
            doc=("`batch=True, smooth_nr=0, smooth_dr=1e-3`", '`phi="BI", eps_nr=0, eps_dr=1e-3`'),
        ),
        Row(
            "monai-squared",
            dict(softmax=True, to_onehot_y=True, squared_pred=True),
            dict(phi="I", squared=True),
            doc=("`squared_pred=True`", "`squared=True`"),
        ),
        Row(
            "monai-batch-squared",
            dict(softmax=True, to_onehot_y=True, squared_pred=True, batch=True),
            dict(phi="BI", squared=True),
            doc=("`squared_pred=True, batch=True`", '`squared=True, phi="BI"`'),
        ),
        Row(
            "monai-no-background",
            dict(softmax=True, to_onehot_y=True, include_background=False),
            dict(phi="I", include_background=False),
            doc=("`include_background=False`", "`include_background=False`"),
        ),
        Row(
            "monai-batch-no-background",
            dict(softmax=True, to_onehot_y=True, include_background=False, batch=True),
            dict(phi="BI", include_background=False),
            doc=("`include_background=False, batch=True`", '`include_background=False, phi="BI"`'),
        ),
        Row(
            "monai-sum",
            dict(softmax=True, to_onehot_y=True, reduction="sum"),
            dict(phi="I", reduction="sum"),
            doc=('`reduction="sum"`', '`reduction="sum"`'),
        ),
        Row(
            "monai-none",
            dict(softmax=True, to_onehot_y=True, reduction="none"),
            dict(phi="I", reduction="none"),
            doc=('`reduction="none"` → (B, C, 1, …)', '`reduction="none"` → (B, C)'),
        ),
        Row(
            "monai-batch-none",
            dict(softmax=True, to_onehot_y=True, batch=True, reduction="none"),
            dict(phi="BI", reduction="none"),
            doc=('`batch=True, reduction="none"` → (C, 1, …)', '`phi="BI", reduction="none"` → (1, C)'),
        ),
        Note(
            "(sigmoid)",
            doc=(
                "`sigmoid=True` with a (B, C, …) multi-label target",
                '`activation="sigmoid"` (`test_monai_diceloss_sigmoid_multilabel`)',
            ),
        ),
        Note(
            "(binary)",
            doc=(
                "`sigmoid=True`, target (B, 1, …) float",
                '`activation="sigmoid"`, target (B, …) integer 0/1 (`test_monai_diceloss_sigmoid_binary_labels`)',
            ),
        ),
        Note(
            "(weights)",
            doc=(
                "`weight=w`",
                "`class_weights=w`; MONAI multiplies then divides by B·C, phidice takes the weighted "
                "mean, so MONAI = phidice × mean(w) (`test_monai_class_weights_row`)",
            ),
        ),
        Note(
            "(one-hot)",
            doc=(
                "`to_onehot_y=False`, one-hot target",
                "one-hot target (B, C, …) — every row above runs with both target forms",
            ),
        ),
    ],
)

MONAI_DICE_IGNORE = Table(
    heading="MONAI ≥ 1.6 `DiceLoss(ignore_index=…)`",
    peer="monai.losses.DiceLoss",
    rows=[
        Row(
            "monai-ignore-index",
            dict(softmax=True, to_onehot_y=True, ignore_index=IGNORE),
            dict(phi="I", ignore_index=IGNORE),
            doc=("`softmax=True, to_onehot_y=True, ignore_index=255`", "`ignore_index=255`"),
        ),
        Row(
            "monai-batch-ignore-index",
            dict(softmax=True, to_onehot_y=True, batch=True, ignore_index=IGNORE),
            dict(phi="BI", ignore_index=IGNORE),
            doc=("`batch=True, ignore_index=255`", '`phi="BI", ignore_index=255`'),
        ),
        Row(
            "monai-no-background-ignore-index",
            dict(softmax=True, to_onehot_y=True, include_background=False, ignore_index=IGNORE),
            dict(phi="I", include_background=False, ignore_index=IGNORE),
            doc=("`include_background=False, ignore_index=255`", "`include_background=False, ignore_index=255`"),
        ),
        Row(
            "monai-ignore-index-negative",
            dict(softmax=True, to_onehot_y=True, batch=True, ignore_index=-1),
            dict(phi="BI", ignore_index=-1),
            doc=("`batch=True, ignore_index=-1`", '`phi="BI", ignore_index=-1`'),
        ),
        Row(
            "monai-ignore-index-class",
            dict(softmax=True, to_onehot_y=True, ignore_index=2),
            dict(phi="I", ignore_index=2),
            doc=(
                "`ignore_index=k` with k a class",
                "`ignore_index=k`: class k's voxels leave every sum, so its own ratio has an empty target, 1 − "
                "ε/(Σỹ_k + ε), in both",
            ),
        ),
        Note(
            "(one-hot)",
            doc=(
                "one-hot target, `ignore_index` ∉ [0, C): the voxels with no class",
                "`mask=(target.sum(1, keepdim=True) > 0)` (`test_monai_diceloss_ignore_index_onehot`)",
            ),
        ),
        Note("(one-hot, class)", doc=("one-hot target, `ignore_index=k` < C", "`mask=(target[:, k:k+1] == 0)`")),
        Note(
            "(sigmoid)",
            doc=(
                "`sigmoid=True, ignore_index=255`, target (B, 1, …)",
                '`activation="sigmoid", ignore_index=255`, target (B, …) integer '
                "(`test_monai_diceloss_ignore_index_sigmoid_binary`)",
            ),
        ),
    ],
)

MONAI_TVERSKY = Table(
    heading="MONAI `TverskyLoss`",
    peer="monai.losses.TverskyLoss",
    rows=[
        Row(
            "default",
            dict(),
            dict(phi="I", eps=1e-05),
            doc=("`TverskyLoss(softmax=True, to_onehot_y=True)`", '`TverskyLoss(phi="I", eps=1e-5)` (α = β = ½)'),
        ),
        Row("batch", dict(batch=True), dict(phi="BI", eps=1e-05), doc=("`batch=True`", '`phi="BI"`')),
        Row(
            "alpha-beta",
            dict(alpha=0.3, beta=0.7),
            dict(alpha=0.3, beta=0.7, phi="I", eps=1e-05),
            doc=("`alpha=0.3, beta=0.7`", "`alpha=0.3, beta=0.7`"),
        ),
        Row(
            "batch-alpha-beta",
            dict(alpha=0.8, beta=0.2, batch=True),
            dict(alpha=0.8, beta=0.2, phi="BI", eps=1e-05),
            doc=("`alpha=0.8, beta=0.2, batch=True`", '`alpha=0.8, beta=0.2, phi="BI"`'),
        ),
        Row(
            "smooth-nr-dr",
            dict(smooth_nr=0.3, smooth_dr=2.0),
            dict(phi="I", eps_nr=0.3, eps_dr=2.0),
            doc=("`smooth_nr=a, smooth_dr=b`", "`eps_nr=a, eps_dr=b`"),
        ),
        Row(
            "batch-smooth",
            dict(batch=True, smooth_nr=0.0, smooth_dr=0.001),
            dict(phi="BI", eps_nr=0.0, eps_dr=0.001),
            doc=("`batch=True, smooth_nr=0, smooth_dr=1e-3`", '`phi="BI", eps_nr=0, eps_dr=1e-3`'),
        ),
        Row(
            "no-background",
            dict(include_background=False),
            dict(phi="I", include_background=False),
            doc=("`include_background=False`", "`include_background=False`"),
        ),
        Row(
            "batch-no-background",
            dict(include_background=False, batch=True),
            dict(phi="BI", include_background=False),
            doc=("`include_background=False, batch=True`", '`include_background=False, phi="BI"`'),
        ),
        Row(
            "sum", dict(reduction="sum"), dict(phi="I", reduction="sum"), doc=('`reduction="sum"`', '`reduction="sum"`')
        ),
        Row(
            "none",
            dict(reduction="none"),
            dict(phi="I", reduction="none"),
            doc=('`reduction="none"`', '`reduction="none"` → (B, C)'),
        ),
        Row(
            "batch-none",
            dict(reduction="none", batch=True),
            dict(phi="BI", reduction="none"),
            doc=('`reduction="none", batch=True`', '`phi="BI", reduction="none"` → (1, C)'),
        ),
    ],
)

MONAI_GDL = Table(
    heading="MONAI `GeneralizedDiceLoss`",
    peer="monai.losses.GeneralizedDiceLoss",
    rows=[
        Row(
            "monai-gdl-square",
            dict(w_type="square"),
            dict(phi="CI", weighting="generalized"),
            doc=('`w_type="square"`', '`phi="CI", weighting="generalized"`'),
        ),
        Row(
            "monai-gdl-square-batch",
            dict(w_type="square", batch=True),
            dict(phi="BCI", weighting="generalized"),
            doc=('`w_type="square", batch=True`', '`phi="BCI", weighting="generalized"`'),
        ),
        Row(
            "monai-gdl-simple",
            dict(w_type="simple"),
            dict(phi="CI", weighting="generalized_simple"),
            doc=('`w_type="simple"`', '`phi="CI", weighting="generalized_simple"`'),
        ),
        Row(
            "monai-gdl-simple-batch",
            dict(w_type="simple", batch=True),
            dict(phi="BCI", weighting="generalized_simple"),
            doc=('`w_type="simple", batch=True`', '`phi="BCI", weighting="generalized_simple"`'),
        ),
        Row("monai-gdl-uniform", dict(w_type="uniform"), dict(phi="CI"), doc=('`w_type="uniform"`', '`phi="CI"`')),
        Row(
            "monai-gdl-uniform-batch",
            dict(w_type="uniform", batch=True),
            dict(phi="BCI"),
            doc=('`w_type="uniform", batch=True`', '`phi="BCI"`'),
        ),
        Row(
            "monai-gdl-no-background",
            dict(w_type="square", include_background=False),
            dict(phi="CI", weighting="generalized", include_background=False),
            doc=("`include_background=False`", "`include_background=False`"),
        ),
    ],
)

NNUNET_SOFT_DICE = Table(
    heading="nnU-Net `SoftDiceLoss` / `MemoryEfficientSoftDiceLoss`",
    peer="nnunetv2 SoftDiceLoss",
    rows=[
        Row(
            "nnunet-image",
            dict(batch_dice=False, do_bg=True, smooth=1e-05),
            dict(phi="I", eps=1e-05),
            doc=("`batch_dice=False, do_bg=True, smooth=1e-5`", '`phi="I", eps=1e-5`'),
        ),
        Row(
            "nnunet-batch",
            dict(batch_dice=True, do_bg=True, smooth=1e-05),
            dict(phi="BI", eps=1e-05),
            doc=("`batch_dice=True`", '`phi="BI"`'),
        ),
        Row(
            "nnunet-no-bg",
            dict(batch_dice=False, do_bg=False, smooth=1.0),
            dict(phi="I", eps=1.0, include_background=False),
            doc=("`do_bg=False, smooth=1.0`", "`include_background=False, eps=1.0`"),
        ),
        Row(
            "nnunet-batch-no-bg",
            dict(batch_dice=True, do_bg=False, smooth=0.0),
            dict(phi="BI", eps=0.0, include_background=False),
            doc=("`batch_dice=True, do_bg=False, smooth=0`", '`phi="BI", include_background=False, eps=0`'),
        ),
        Note("(mask)", doc=("`loss_mask=m` (B, 1, …)", "`mask=m`")),
        Note("(sign)", doc=("returns −DSC", "returns 1 − DSC")),
    ],
)

# docs/metrics.md: MONAI DiceMetric's ignore_empty is the metrics' empty rule (Φ = I)
MONAI_DICE_METRIC = Table(
    heading="",
    peer="monai.metrics.DiceMetric",
    rows=[
        Row("monai-metric-ignore-empty", dict(ignore_empty=True), dict(empty="nan")),
        Row("monai-metric-keep-empty", dict(ignore_empty=False), dict(empty="one")),
    ],
)

TABLES = [MONAI_DICE, MONAI_DICE_IGNORE, MONAI_TVERSKY, MONAI_GDL, NNUNET_SOFT_DICE, MONAI_DICE_METRIC]
