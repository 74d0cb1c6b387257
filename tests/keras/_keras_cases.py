"""The inputs the Keras losses are held to the PyTorch losses on: NumPy only, so that a back end's worker
process can read them without torch.

A case is one loss with one set of options on one batch, given twice: ``x``/``y`` in the layout the Keras
loss is told (``data_format``) and ``x_t``/``y_t`` channels-first for PyTorch. Options vary one at a time
around a base per Φ (every value of every option appears for every Φ), plus random combinations.
Labels leave some (image, class) pairs empty, and in some batches a class empty in every image, so that
ε, ``eps_empty``, ``empty="skip"`` and Φ ∋ B all change the numbers.
"""

from __future__ import annotations

import itertools

import numpy as np

PHIS = ("I", "CI", "BI", "BCI")
B = 3
SPATIAL = {"1d": (7,), "2d": (6, 5), "3d": (4, 3, 5)}
PER_CLASS = {"eps": (1e-3, 0.5, 2.0, 0.1), "w": (0.5, 1.0, 2.0, 1.5), "ce": (1.0, 2.0, 0.5, 3.0)}


def per_class(kind: str, n: int) -> list[float]:
    return list(PER_CLASS[kind][:n])


# ---------------------------------------------------------------- option space

EPS_FORMS = {
    "eps_default": {},
    "eps_1": {"eps": 1.0},
    "eps_0": {"eps": 0.0},
    "eps_C": {"eps": "C"},
    "eps_C-1": {"eps": "C-1"},
    "nr0_dr": {"eps_nr": 0.0, "eps_dr": 1e-3},
    "nr_C": {"eps": 0.5, "eps_nr": "C"},
    "dr_C": {"eps_dr": "C"},
    "empty_1": {"eps_empty": 1.0},
    "empty_C": {"eps": 1e-3, "eps_empty": "C"},
}

# every choice; the first value of each is the base
SPACE = {
    "eps_form": list(EPS_FORMS),
    "activation": ["softmax", "sigmoid", None],
    "include_background": [True, False],
    "class_weights": [None, "C", "C-1"],
    "weighting": [None, "generalized", "generalized_simple"],
    "squared": [False, True],
    "empty": ["smooth", "skip"],
    "ignore_index": [None, 255, -1],
    "reduction": ["mean", "sum", "none"],
    "target": ["labels", "labels1", "float_labels", "onehot", "bool", "soft"],
    "soft_label": [False, True],
    "dims": ["2d", "3d", "1d"],
    "data_format": ["channels_last", "channels_first"],
    "C": [3, 2, 1],
    "dtype": ["float32", "float16", "bfloat16"],
}
SHAPE_KEYS = ("dims", "C", "data_format", "dtype")  # random combinations keep these at the base (one compile each)
CE_SPACE = {"lambda_dice": [1.0, 0.5], "lambda_ce": [1.0, 2.0], "ce_weight": [None, "C"], "label_smoothing": [0.0, 0.1]}
FOCAL_SPACE = {
    "gamma": [2.0, 0.0, 0.5],
    "alpha": [None, 0.25, "C"],
    "focal_weight": [None, "C"],
    "lambda_focal": [1.0, 0.5],
    "focal_activation": [None, "sigmoid"],
}
PARTIAL_SPACE = {"annotated": ["flags", "none", "supersets"]}
# the choices of each loss that vary alone under every Φ; the loss's other choices vary alone once, on one Φ
OWN = {
    "DiceLoss": tuple(k for k in SPACE if k not in SHAPE_KEYS),
    "DiceCELoss": ("lambda_dice", "lambda_ce", "ce_weight", "label_smoothing", "activation", "include_background"),
    "DiceFocalLoss": ("gamma", "alpha"),
    "LeafDiceLoss": ("annotated", "activation", "include_background"),
    "MarginalDiceLoss": ("annotated", "activation", "include_background"),
}
N_RANDOM = {"DiceLoss": 6, "DiceCELoss": 2, "DiceFocalLoss": 1, "LeafDiceLoss": 2, "MarginalDiceLoss": 2}


def _space(loss: str) -> dict:
    space = dict(SPACE)
    if loss == "DiceCELoss":
        space.update(CE_SPACE, activation=["softmax", "sigmoid"], reduction=["mean", "sum"])
    if loss == "DiceFocalLoss":  # the Dice options are DiceLoss's own cases; here those the focal term reads
        space.update(
            FOCAL_SPACE,
            activation=["softmax", "sigmoid"],
            reduction=["mean", "sum"],
            target=["labels", "soft", "onehot"],
            ignore_index=[None, 255],
            dims=["2d", "3d"],
            **{k: space[k][:1] for k in ("class_weights", "weighting", "squared", "empty", "C")},
        )
    if loss in ("LeafDiceLoss", "MarginalDiceLoss"):
        space.update(PARTIAL_SPACE, C=[3, 4])
        if loss == "MarginalDiceLoss":
            space["activation"] = ["softmax", None]
    return space


def _valid(loss: str, phi: str, s: dict) -> bool:
    """Options that both frameworks accept (the error cases test the rest)."""
    C = s["C"]
    if s["activation"] == "softmax" and C < 2:
        return False
    if s["weighting"] is not None and phi in ("I", "BI"):
        return False
    c_minus_1 = s["class_weights"] == "C-1" or s["eps_form"] == "eps_C-1"
    if c_minus_1 and (s["include_background"] or C < 2):
        return False
    if s["ignore_index"] is not None and s["target"] not in ("labels", "labels1", "float_labels"):
        return False
    if C == 1 and s["activation"] is None and s["target"] in ("labels", "labels1", "float_labels"):
        return False  # one probability channel takes labels in [0, 0] only (PyTorch's rule); maps are fine
    if s["dtype"] != "float32" and s["data_format"] != "channels_last":
        return False
    if loss in ("LeafDiceLoss", "MarginalDiceLoss"):
        if s["annotated"] == "supersets" and (s["target"] not in ("labels", "labels1") or s["activation"] == "sigmoid"):
            return False
        if s["annotated"] != "none" and s["activation"] == "sigmoid" and s["target"] == "soft":
            return False
    return True


def _one_change(base: dict, key: str, value) -> dict:
    """``base`` with ``key`` set to ``value`` and what that choice needs (C − 1 values: no background, …)."""
    s = dict(base, **{key: value})
    if value == "C-1" or s["eps_form"] == "eps_C-1":
        s["include_background"] = False
    if key == "ignore_index":
        s["target"] = "labels"
    if key == "C" and value == 1:
        s["activation"] = "sigmoid"
    if key == "weighting":
        s["class_weights"] = None
    return s


def option_sets(loss: str, seed: int):
    """(Φ, choices, base, core): the base per Φ; each of the loss's own choices changed alone under every Φ,
    each other choice changed alone under one Φ (in turn) — the core cases —; then random combinations per Φ."""
    space = _space(loss)
    base = {k: v[0] for k, v in space.items()}
    rng = np.random.default_rng(seed)
    out, seen = [], set()

    def add(phi, s, core=True) -> bool:
        key = (phi, tuple(sorted((k, str(v)) for k, v in s.items())))
        if not _valid(loss, phi, s) or key in seen:
            return False
        seen.add(key)
        out.append((phi, s, base, core))
        return True

    turn = 0
    for key, values in space.items():
        for value in values[1:]:
            if key in OWN[loss]:
                for phi in PHIS:
                    add(phi, _one_change(base, key, value))
            else:  # the first Φ in turn that accepts it
                for k in range(len(PHIS)):
                    if add(PHIS[(turn + k) % len(PHIS)], _one_change(base, key, value)):
                        break
                turn += 1
    for phi in PHIS:
        add(phi, dict(base))
        made = 0
        for _ in range(50 * N_RANDOM[loss]):
            if made == N_RANDOM[loss]:
                break
            s = {k: (base[k] if k in SHAPE_KEYS else v[rng.integers(len(v))]) for k, v in space.items()}
            made += add(phi, s, core=False)
    return out


# ---------------------------------------------------------------- data


def _softmax(z, axis):
    e = np.exp(z - z.max(axis, keepdims=True))
    return e / e.sum(axis, keepdims=True)


def _labels(rng, C, spatial, batch_empty: bool):
    """(B, *S) labels in which each image holds the background and a random subset of the classes."""
    out = np.zeros((B, *spatial), dtype=np.int64)
    for b in range(B):
        if C == 1:
            allowed = [0, 1] if (b == 0 or rng.random() < 0.7) else [0]
        else:
            eligible = [c for c in range(1, C) if not (batch_empty and c == C - 1)] or list(range(1, C))
            allowed = [0] + ([c for c in eligible if rng.random() < 0.6] or [eligible[rng.integers(len(eligible))]])
        out[b] = rng.choice(allowed, size=spatial, p=rng.dirichlet(np.ones(len(allowed))))
    return out


def _partial_labels(rng, C, spatial):
    """(annotated (B, C), labels (B, *S)) of a partially annotated batch: sample 0 annotates every class, the
    others a random non-empty subset; each sample holds the background and some of its annotated classes."""
    annotated = np.ones((B, C), dtype=bool)
    for b in range(1, B):
        annotated[b, 1:] = rng.random(C - 1) < 0.5
        if not annotated[b, 1:].any():
            annotated[b, rng.integers(1, C)] = True
    labels = np.zeros((B, *spatial), dtype=np.int64)
    for b in range(B):
        own = [c for c in range(1, C) if annotated[b, c]]
        present = [c for c in own if rng.random() < 0.7] or own[:1]
        labels[b] = rng.choice([0, *present], size=spatial, p=rng.dirichlet(np.ones(len(present) + 1)))
    return annotated, labels


def _round(x, dtype):
    """Values exactly representable in ``dtype``, held as float32 (both frameworks cast them losslessly)."""
    if dtype == "float16":
        return x.astype(np.float16).astype(np.float32)
    if dtype == "bfloat16":
        bits = x.astype(np.float32).view(np.uint32)
        return ((bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000).view(np.float32)
    return x


def _resolve(value, C):
    if value == "C":
        return C
    if value == "C-1":
        return C - 1
    return None


def make_case(loss: str, phi: str, s: dict, base: dict, rng, index: int, core: bool = True) -> dict:
    C, spatial, act = s["C"], SPATIAL[s["dims"]], s["activation"]
    options = {"phi": phi}
    for k, v in EPS_FORMS[s["eps_form"]].items():
        n = _resolve(v, C)
        options[k] = per_class("eps", n) if n else v
    n = _resolve(s["class_weights"], C)
    if n:
        options["class_weights"] = per_class("w", n)
    for key in (
        "activation",
        "include_background",
        "weighting",
        "squared",
        "empty",
        "ignore_index",
        "reduction",
        "soft_label",
    ):
        if s[key] != base[key] or key == "activation":
            options[key] = s[key]
    if loss == "DiceCELoss":
        options.update(lambda_dice=s["lambda_dice"], lambda_ce=s["lambda_ce"], label_smoothing=s["label_smoothing"])
        if s["ce_weight"] == "C":
            options["ce_weight"] = per_class("ce", C)
    if loss == "DiceFocalLoss":
        options.update(gamma=s["gamma"], lambda_focal=s["lambda_focal"], focal_activation=s["focal_activation"])
        options["alpha"] = [0.2, 0.5, 0.9, 0.4][:C] if s["alpha"] == "C" else s["alpha"]
        if s["focal_weight"] == "C":
            options["focal_weight"] = per_class("ce", C)

    labels = _labels(rng, C, spatial, batch_empty=rng.random() < 0.5)
    annotated = None
    superset_map = None
    raw = None
    if loss in ("LeafDiceLoss", "MarginalDiceLoss") and s["annotated"] != "none":
        annotated, labels = _partial_labels(rng, C, spatial)
        if s["annotated"] == "supersets":  # background voxels of sample b read "0 or one of its unannotated classes"
            foreground = list(range(1, C))
            subsets = [u for r in range(1, C) for u in itertools.combinations(foreground, r)]
            superset_map = {C + i: [0, *u] for i, u in enumerate(subsets)}
            raw = labels.copy()
            for b in range(B):
                u = tuple(c for c in foreground if not annotated[b, c])
                if u:
                    raw[b][raw[b] == 0] = C + subsets.index(u)
            annotated = None
    # logits (channels-first, as PyTorch) that predict the labels as well as a per-image skill says, so that the
    # images differ in quality and every Φ gives its own value
    skill = rng.uniform(0.0, 3.0, size=(B,) + (1,) * (len(spatial) + 1))
    hits = np.moveaxis(np.eye(max(C, 2))[labels][..., :C], -1, 1) if C > 1 else (labels[:, None] == 1)
    logits = (rng.normal(0.0, 1.5, size=(B, C, *spatial)) + skill * (2 * hits - 1)).astype(np.float32)
    if act is None:
        logits = (_softmax(logits, 1) if C > 1 else 1 / (1 + np.exp(-logits))).astype(np.float32)
    x_t = _round(logits, s["dtype"])
    ignore = s["ignore_index"]
    target = raw if raw is not None else labels
    if ignore is not None:
        target = target.copy()
        target[rng.random(target.shape) < 0.15] = ignore
    kind = s["target"]
    if C == 1 and kind in ("onehot", "bool"):
        y_t = (labels[:, None] == 1).astype(np.float32)
    elif kind in ("onehot", "bool"):
        y_t = np.moveaxis(np.eye(C, dtype=np.float32)[labels], -1, 1)
        if act == "sigmoid" and annotated is None and rng.random() < 0.5:
            # multi-label: extra voxels for the classes an image holds, so that the classes overlap
            holds = y_t.max(axis=tuple(range(2, y_t.ndim)), keepdims=True)
            y_t = np.maximum(y_t, (rng.random(y_t.shape) < 0.2) * holds)
    elif kind == "soft":
        z = rng.normal(0.0, 2.0, size=(B, C, *spatial))
        if act == "sigmoid" or C == 1:
            y_t = (1 / (1 + np.exp(-z))).astype(np.float32)
        else:
            y_t = _softmax(z, 1).astype(np.float32)
            if annotated is not None:  # unannotated classes' mass goes to the background
                y_t = y_t * annotated.reshape(B, C, *(1,) * len(spatial))
                y_t[:, 0] += 1 - y_t.sum(1)
    elif kind == "labels1":
        y_t = target[:, None]
    elif kind == "float_labels":
        y_t = target.astype(np.float32)
    else:
        y_t = target
    if kind == "bool":
        y_t = y_t > 0.5
    if act == "sigmoid" and annotated is not None and kind in ("onehot", "bool"):
        y_t = y_t * annotated.reshape(B, C, *(1,) * len(spatial))
    first = s["data_format"] == "channels_first"
    x = x_t if first else np.moveaxis(x_t, 1, -1)
    y = y_t if (first or y_t.ndim == labels.ndim) else np.moveaxis(y_t, 1, -1)
    name = f"{loss}-{index}-{phi}-" + "-".join(f"{k}={v}" for k, v in s.items() if v != base[k] or k == "C")
    return {
        "id": name,
        "loss": loss,
        "options": options,
        "keras_options": {"data_format": s["data_format"]},
        "x": np.ascontiguousarray(x),
        "y": np.ascontiguousarray(y),
        "x_t": x_t,
        "y_t": y_t,
        "annotated": annotated,
        "superset_map": superset_map,
        "dtype": s["dtype"],
        "grad": s["dtype"] == "float32",
        "core": core,
    }


LOSSES = ("DiceLoss", "DiceCELoss", "LeafDiceLoss", "MarginalDiceLoss", "DiceFocalLoss")
# JAX compiles every new primitive shape (~0.1 s each): it runs the core cases — every Φ × ε form × option —
# and leaves the random combinations, which exercise the same keras.ops, to the PyTorch and TensorFlow back ends
CORE_ONLY = ("jax",)


def cases_for(backend: str, cases: list[dict]) -> list[dict]:
    return [c for c in cases if c["core"] or backend not in CORE_ONLY]


def build_cases(seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    cases = []
    for j, loss in enumerate(LOSSES):
        for i, (phi, s, base, core) in enumerate(option_sets(loss, seed + j)):
            cases.append(make_case(loss, phi, s, base, rng, i, core))
    return cases + nonfinite_cases(cases) + integer_map_cases(cases)


def integer_map_cases(cases: list[dict]) -> list[dict]:
    """Per loss, the first float32 core case with a one-hot map target (C > 1), the map given as int64 (as
    ``one_hot(y, C)`` makes it) and as uint8: the same numbers as the float map."""
    out, seen = [], set()
    for c in cases:
        y = c["y_t"]
        onehot = (
            y.dtype == np.float32
            and y.shape == c["x_t"].shape
            and y.shape[1] > 1
            and bool(np.isin(y, (0.0, 1.0)).all())
        )
        if not c["core"] or c["dtype"] != "float32" or not onehot or c["loss"] in seen or c.get("nonfinite"):
            continue
        seen.add(c["loss"])
        for dtype in (np.int64, np.uint8):
            out.append(
                {
                    **c,
                    "id": f"{c['id']}-map={np.dtype(dtype).name}",
                    "y_t": y.astype(dtype),
                    "y": c["y"].astype(dtype),
                    "int_map": np.dtype(dtype).name,
                }
            )
    return out


SPECIALS = {"nan": np.nan, "+inf": np.inf, "-inf": -np.inf}


def nonfinite_cases(cases: list[dict]) -> list[dict]:
    """Per loss, Φ and activation, the first float32 core case with one NaN, +Inf or −Inf logit (channel 1 of
    image 0, first voxel): NaN (+Inf under a softmax) must give NaN in both frameworks, −Inf the same number.
    Gradients are compared where the loss is finite."""
    out, seen = [], set()
    for c in cases:
        act = c["options"].get("activation")
        key = (c["loss"], c["options"]["phi"], act)
        if not c["core"] or c["dtype"] != "float32" or act is None or c["x_t"].shape[1] < 2 or key in seen:
            continue
        seen.add(key)
        for name, value in SPECIALS.items():
            x_t = c["x_t"].copy()
            x_t[(0, 1) + (0,) * (x_t.ndim - 2)] = value
            first = c["keras_options"]["data_format"] == "channels_first"
            nan = name == "nan" or (name == "+inf" and act == "softmax")
            out.append(
                {
                    **c,
                    "id": f"{c['id']}-logit={name}",
                    "x_t": x_t,
                    "x": np.ascontiguousarray(x_t if first else np.moveaxis(x_t, 1, -1)),
                    "grad": not nan,
                    "nonfinite": name,
                    "expect_nan": nan,
                }
            )
    return out


# ---------------------------------------------------------------- bad input

AXIS_WORDS = {"channels_last": "the last axis", "channels_first": "axis 1"}


def _error_case(
    name,
    loss="DiceLoss",
    options=None,
    x=None,
    y=None,
    annotated=None,
    superset_map=None,
    dtype="float32",
    data_format="channels_last",
    exact=False,
    contains=(),
):
    """Bad input for both frameworks; ``x``/``y`` channels-last (moved for PyTorch and for channels-first).

    ``exact``: the messages are equal (the class axis named in each layout's words); otherwise both contain
    every string of ``contains`` (the frameworks name the arguments differently: input/target, y_pred/y_true).
    """
    x_t = np.moveaxis(x, -1, 1) if x.ndim > 2 else x
    y_t = np.moveaxis(y, -1, 1) if (y.ndim == x.ndim and x.ndim > 2) else y
    first = data_format == "channels_first"
    return {
        "id": f"error-{name}",
        "loss": loss,
        "options": dict(options or {}),
        "keras_options": {"data_format": data_format},
        "x": x_t if first else x,
        "y": y_t if first else y,
        "x_t": x_t,
        "y_t": y_t,
        "annotated": annotated,
        "superset_map": superset_map,
        "dtype": dtype,
        "grad": False,
        "exact": exact,
        "contains": list(contains),
        "axis": ("along dim 1", f"along {AXIS_WORDS[data_format]}"),
    }


def build_error_cases() -> list[dict]:
    rng = np.random.default_rng(7)
    x = rng.normal(size=(2, 4, 5, 3)).astype(np.float32)
    lab = rng.integers(0, 3, size=(2, 4, 5))
    lab[:, 0, 0] = (1, 2)
    onehot = np.eye(3, dtype=np.float32)[lab]
    probs = (np.exp(x) / np.exp(x).sum(-1, keepdims=True)).astype(np.float32)

    def labels_with(value, at=(1, 2, 3)):
        out = lab.copy()
        out[at] = value
        return out

    E = _error_case
    cases = [
        E("unknown_phi", options={"phi": "IB"}, x=x, y=lab, exact=True),
        E("phi_not_string", options={"phi": 3}, x=x, y=lab, exact=True),
        E("negative_eps", options={"eps": -1.0}, x=x, y=lab, exact=True),
        E("eps_nan", options={"eps": [1.0, float("nan"), 1.0]}, x=x, y=lab, exact=True),
        E("eps_2d", options={"eps": [[1.0, 2.0, 3.0]]}, x=x, y=lab, exact=True),
        E("bad_activation", options={"activation": "relu"}, x=x, y=lab, exact=True),
        E("weighting_needs_class_sum", options={"phi": "BI", "weighting": "generalized"}, x=x, y=lab, exact=True),
        E("bad_empty", options={"empty": "drop"}, x=x, y=lab, exact=True),
        E("bad_reduction", options={"reduction": "avg"}, x=x, y=lab, exact=True),
        E("flag_not_bool", options={"squared": "yes"}, x=x, y=lab, exact=True),
        E("ignore_index_float", options={"ignore_index": 2.5}, x=x, y=lab, exact=True),
        E("eps_length", options={"eps": [1.0, 2.0]}, x=x, y=lab, exact=True),
        E("eps_length_first", options={"eps": [1.0, 2.0]}, x=x, y=lab, exact=True, data_format="channels_first"),
        E(
            "eps_length_no_background",
            options={"eps": [1.0, 2.0, 3.0, 4.0], "include_background": False},
            x=x,
            y=lab,
            exact=True,
        ),
        E("eps_nr_length", options={"eps_nr": [1.0, 2.0]}, x=x, y=lab, exact=True),
        E("eps_empty_length", options={"eps_empty": [1.0, 2.0]}, x=x, y=lab, exact=True),
        E("class_weights_length", options={"class_weights": [1.0, 2.0, 3.0, 4.0]}, x=x, y=lab, exact=True),
        E("label_too_big", x=x, y=labels_with(3), contains=["labels must lie in [0, 2]; got values in [0, 3]"]),
        E("label_negative", x=x, y=labels_with(-1), contains=["labels must lie in [0, 2]; got values in [-1, 2]"]),
        E(
            "label_one_wide_axis",
            x=x,
            y=labels_with(5)[..., None],
            contains=["labels must lie in [0, 2]; got values in [0, 5]"],
        ),
        E(
            "label_ignore_excepted",
            options={"ignore_index": 255},
            x=x,
            y=labels_with(4, (0, 1, 1)),
            contains=["labels must lie in [0, 2] (ignore_index=255 excepted); got values in [0, 4]"],
        ),
        E(
            "sigmoid_single_channel",
            options={"activation": "sigmoid"},
            x=x[..., :1],
            y=lab,
            contains=["labels must lie in [0, 1]; got values in [0, 2]"],
        ),
        E("float_labels_non_integer", x=x, y=lab + 0.5, contains=["non-integer values"]),
        E("map_out_of_range", x=x, y=onehot * 1.5, contains=["values must lie in [0, 1] (one-hot or soft maps)"]),
        E(
            "ignore_index_with_map",
            options={"ignore_index": 255},
            x=x,
            y=onehot,
            contains=["ignore_index applies to integer label targets"],
        ),
        E("target_spatial_mismatch", x=x, y=lab[:, :3], contains=["shape (2, 3, 5) (dtype", "does not fit"]),
        E("target_batch_mismatch", x=x, y=lab[:1], contains=["batch size 1 does not match", "batch size 2"]),
        E(
            "integer_map_of_labels",
            x=x,
            y=onehot.astype(np.int64) * 2,
            contains=["values must lie in [0, 1] (one-hot or soft maps)"],
        ),
        E("pred_rank", x=x[:, 0, 0, :], y=lab[:, 0, 0], contains=["with at least one spatial dim; got shape (2, 3)"]),
        E("empty_batch", x=x[:0], y=lab[:0], contains=["is an empty batch (B = 0)"]),
        E("softmax_one_channel", x=x[..., :1], y=np.zeros_like(lab), exact=True),
        E("integer_pred", x=x.astype(np.int32), y=lab, dtype="int32", contains=["expects float logits"]),
        E(
            "check_finite",
            options={"check_finite": True},
            x=np.where(x > 2, np.nan, x).astype(np.float32),
            y=lab,
            contains=["contains NaN or Inf (check_finite=True)"],
        ),
        E("ce_activation_none", "DiceCELoss", {"activation": None}, x=x, y=lab, exact=True),
        E("ce_reduction_none", "DiceCELoss", {"reduction": "none"}, x=x, y=lab, exact=True),
        E("ce_weight_length", "DiceCELoss", {"ce_weight": [1.0, 2.0]}, x=x, y=lab, exact=True),
        E("ce_lambda_negative", "DiceCELoss", {"lambda_ce": -1.0}, x=x, y=lab, exact=True),
        E("ce_smoothing_range", "DiceCELoss", {"label_smoothing": 1.5}, x=x, y=lab, exact=True),
        E("focal_gamma_negative", "DiceFocalLoss", {"gamma": -1.0}, x=x, y=lab, exact=True),
        E("focal_lambda_negative", "DiceFocalLoss", {"lambda_focal": -1.0}, x=x, y=lab, exact=True),
        E("focal_alpha_range", "DiceFocalLoss", {"alpha": 1.5}, x=x, y=lab, exact=True),
        E("focal_activation_none", "DiceFocalLoss", {"activation": None}, x=x, y=lab, exact=True),
        E("focal_alpha_length", "DiceFocalLoss", {"alpha": [0.1, 0.2]}, x=x, y=lab, exact=True),
        E(
            "soft_label_range",
            "DiceLoss",
            {"soft_label": True},
            x=x,
            y=np.full(x.shape, 1.5, np.float32),
            contains=["values must lie in [0, 1]"],
        ),
        E("ce_label_range", "DiceCELoss", x=x, y=labels_with(7), contains=["labels must lie in [0, 2]"]),
        E("marginal_sigmoid", "MarginalDiceLoss", {"activation": "sigmoid"}, x=x, y=lab, exact=True),
        E(
            "marginal_one_channel",
            "MarginalDiceLoss",
            {"activation": None},
            x=probs[..., :1],
            y=np.zeros((2, 4, 5, 1), np.float32),
            exact=True,
        ),
        E(
            "annotated_shape",
            "LeafDiceLoss",
            x=x,
            y=lab,
            annotated=np.ones((2, 2), bool),
            contains=["annotated must have shape (B, C) = (2, 3)"],
        ),
        E(
            "annotated_float",
            "LeafDiceLoss",
            x=x,
            y=lab,
            annotated=np.ones((2, 3), np.float32),
            contains=["annotated must be a bool tensor (or integers 0/1) of shape (B, C)"],
        ),
        E(
            "annotated_int_values",
            "LeafDiceLoss",
            x=x,
            y=lab,
            annotated=np.full((2, 3), 2, np.int32),
            contains=["must hold only 0 and 1"],
        ),
        E(
            "annotated_background",
            "LeafDiceLoss",
            x=x,
            y=lab,
            annotated=np.array([[1, 1, 1], [0, 1, 1]], bool),
            contains=["annotated[:, 0] (background) must be True; got False for sample(s) [1]"],
        ),
        E(
            "annotated_nothing",
            "LeafDiceLoss",
            {"activation": "sigmoid"},
            x=x,
            y=onehot * 0,
            annotated=np.array([[0, 0, 0], [1, 1, 1]], bool),
            contains=["sample(s) [0] have no class annotated"],
        ),
        E(
            "labels_of_unannotated",
            "MarginalDiceLoss",
            x=x,
            y=lab,
            annotated=np.array([[1, 1, 1], [1, 1, 0]], bool),
            contains=["labels of classes marked unannotated, at (sample, class) (1, 2)"],
        ),
        E("superset_key_below_classes", "LeafDiceLoss", x=x, y=lab, superset_map={2: [0, 1]}, exact=True),
        E("superset_without_background", "LeafDiceLoss", x=x, y=lab, superset_map={3: [1, 2]}, exact=True),
        E(
            "superset_unknown_label",
            "LeafDiceLoss",
            x=x,
            y=labels_with(7),
            superset_map={3: [0, 2]},
            contains=["[7], which are neither leaf labels [0, 2] nor superset labels [3]"],
        ),
        E(
            "superset_partial",
            "LeafDiceLoss",
            x=x,
            y=labels_with(3, (0, 2, 2)),
            superset_map={3: [0, 2]},
            contains=["(sample, class) [(0, 2)]: the class is labelled in some voxels and part of a superset"],
        ),
    ]
    return cases


# ---------------------------------------------------------------- scenario inputs


def pick(cases: list[dict], loss: str, **wanted) -> dict:
    """The first case of ``loss`` whose options include ``wanted`` (for the traced and serialization runs)."""
    for case in cases:
        opts = {**case["options"], **case["keras_options"], "superset": case["superset_map"] is not None}
        if case["loss"] == loss and case["dtype"] == "float32" and all(opts.get(k) == v for k, v in wanted.items()):
            return case
    raise LookupError(f"no {loss} case with {wanted}")


def scenario_cases(cases: list[dict]) -> list[dict]:
    """A few cases with options of every kind: per-class ε, weights, ignore_index, skip, supersets."""
    return [
        pick(cases, "DiceLoss", phi="BI", eps=per_class("eps", 3)),
        pick(cases, "DiceLoss", phi="CI", weighting="generalized"),
        pick(cases, "DiceLoss", phi="I", ignore_index=255),
        pick(cases, "DiceLoss", phi="BCI", empty="skip"),
        pick(cases, "DiceCELoss", phi="I", ce_weight=per_class("ce", 3)),
        pick(cases, "LeafDiceLoss", phi="BI", superset=True),
        pick(cases, "MarginalDiceLoss", phi="CI", superset=False),
    ]
