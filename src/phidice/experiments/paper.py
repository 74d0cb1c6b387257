"""Numbers of the paper's Table 1 (Tilborghs, Bertels et al., MICCAI 2022), printed beside ours.

Read from the text copy of the paper the project works from, whose table is partly garbled: a value is
given only where its row and column are unambiguous, and None (shown as "–") elsewhere. DSC is the mean
Dice, ΔV the mean volume difference in ml (BRATS: whole tumour at 2 mm; ACDC: myocardium).
Keys: (task, labelling, B, config) -> {"dsc": (always-labelled group, missing group), "dv": (same)}.
"""

from __future__ import annotations

_: None = None
PAPER: dict[tuple[str, str, int, str], dict[str, tuple[float | None, float | None]]] = {
    # BRATS, full labelling: every legible DSC is 0.88–0.90
    ("binary", "full", 1, "I"): {"dsc": (0.89, 0.89), "dv": (-4, -8)},
    ("binary", "full", 1, "BI"): {"dsc": (0.89, 0.89), "dv": (-4, -7)},
    ("binary", "full", 1, "I_eps"): {"dsc": (_, _), "dv": (-7, -9)},
    ("binary", "full", 2, "I"): {"dsc": (_, _), "dv": (-5, -9)},
    ("binary", "full", 2, "BI"): {"dsc": (0.89, 0.88), "dv": (-5, -10)},
    ("binary", "full", 2, "I_eps"): {"dsc": (_, _), "dv": (-7, -12)},
    ("binary", "full", 4, "I"): {"dsc": (_, _), "dv": (-6, -11)},
    ("binary", "full", 4, "BI"): {"dsc": (0.89, 0.90), "dv": (-5, -7)},
    ("binary", "full", 4, "I_eps"): {"dsc": (0.89, _), "dv": (-7, -11)},
    ("binary", "full", 8, "I"): {"dsc": (_, _), "dv": (-6, -12)},
    ("binary", "full", 8, "BI"): {"dsc": (0.89, 0.88), "dv": (-4, -10)},
    ("binary", "full", 8, "I_eps"): {"dsc": (0.89, _), "dv": (-6, -9)},
    # BRATS, partial labelling (LGG labels replaced by empty maps)
    ("binary", "partial", 1, "I"): {"dsc": (_, 0.88), "dv": (_, -11)},
    ("binary", "partial", 1, "BI"): {"dsc": (0.89, 0.88), "dv": (_, -12)},
    ("binary", "partial", 1, "I_eps"): {"dsc": (0.83, _), "dv": (-12, -88)},
    ("binary", "partial", 2, "I"): {"dsc": (_, _), "dv": (_, -12)},
    ("binary", "partial", 2, "BI"): {"dsc": (0.83, 0.24), "dv": (-12, -89)},
    ("binary", "partial", 2, "I_eps"): {"dsc": (0.82, _), "dv": (-13, -96)},
    ("binary", "partial", 4, "I"): {"dsc": (_, _), "dv": (-6, -15)},
    ("binary", "partial", 4, "BI"): {"dsc": (_, 0.20), "dv": (-12, -93)},
    ("binary", "partial", 4, "I_eps"): {"dsc": (_, _), "dv": (-12, -94)},
    ("binary", "partial", 8, "I"): {"dsc": (_, _), "dv": (-6, -14)},
    ("binary", "partial", 8, "BI"): {"dsc": (_, 0.20), "dv": (-12, -94)},
    ("binary", "partial", 8, "I_eps"): {"dsc": (_, _), "dv": (-12, -90)},
    # ACDC (B = 2), myocardium at end-diastole / end-systole
    ("multiclass", "full", 2, "I"): {"dsc": (0.88, _), "dv": (-1, -3)},
    ("multiclass", "full", 2, "BI"): {"dsc": (0.88, _), "dv": (_, 0)},
    ("multiclass", "full", 2, "I_eps"): {"dsc": (0.87, _), "dv": (-2, -3)},
    ("multiclass", "partial", 2, "I"): {"dsc": (0.88, 0.88), "dv": (0, -5)},
    ("multiclass", "partial", 2, "BI"): {"dsc": (0.80, _), "dv": (-11, -129)},
    ("multiclass", "partial", 2, "I_eps"): {"dsc": (0.80, _), "dv": (-14, -131)},
    ("multiclass", "partial", 2, "leaf"): {"dsc": (0.88, 0.88), "dv": (_, _)},
    ("multiclass", "partial", 2, "marginal"): {"dsc": (0.88, 0.88), "dv": (_, _)},
}
PAPER_AUC = "around 0.9 for both tasks (Fig. 2, partial labelling)"
PAPER_GROUPS = {"binary": ("HGG", "LGG"), "multiclass": ("MYO_ED", "MYO_ES")}


def paper_value(task: str, labelling: str, batch_size: int, config: str, what: str, index: int):
    entry = PAPER.get((task, labelling, batch_size, config))
    return None if entry is None else entry[what][index]
