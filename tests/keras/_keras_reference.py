"""The PyTorch side of the comparison: each case through the PyTorch loss of the same name (values, autograd
gradients w.r.t. the logits, channels-first), and the errors the PyTorch losses raise."""

from __future__ import annotations

import numpy as np
import torch

import phidice

TORCH_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16, "int32": torch.int32}


def run_torch(case: dict) -> dict:
    """{"value", "grad"} of the PyTorch loss on ``case`` (grad channels-first, float32), or {"error"}."""
    try:
        x = torch.tensor(case["x_t"]).to(TORCH_DTYPES[case["dtype"]]).requires_grad_(case["grad"])
        y = torch.as_tensor(case["y_t"])
        loss = getattr(phidice, case["loss"])(**case["options"])
        if case["loss"] in ("LeafDiceLoss", "MarginalDiceLoss"):
            annotated = case["annotated"]
            if case["superset_map"] is not None:
                y, annotated = phidice.annotated_from_label_sets(
                    y, case["superset_map"], case["x_t"].shape[1], ignore_index=case["options"].get("ignore_index")
                )
            elif annotated is not None:
                annotated = torch.as_tensor(annotated)
            out = loss(x, y, annotated)
        else:
            out = loss(x, y)
    except (TypeError, ValueError) as err:
        return {"error": (type(err).__name__, str(err))}
    grad = None
    if case["grad"]:
        out.sum().backward()
        grad = x.grad.float().numpy()
    return {"value": out.detach().float().numpy(), "grad": grad}


def keras_grad_as_torch(grad: np.ndarray, case: dict) -> np.ndarray:
    """A Keras gradient in PyTorch's channels-first layout."""
    return grad if case["keras_options"]["data_format"] == "channels_first" else np.moveaxis(grad, -1, 1)
