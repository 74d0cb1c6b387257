"""The autograd Function of the fused path: one-hot-free sums forward, Eq. 4 through the activation backward.

Forward returns, per image b and class c, I = Σ m·p_c·[y = c], P = Σ m·p_c and Y = Σ m·[y = c]
(Y carries no gradient). Since the loss depends on the logits only through I and P, the backward
needs just the incoming (B, C) gradients gI = ∂L/∂I, gP = ∂L/∂P — Eq. 4's two values per entry (y = 0: gP;
y = 1: gP + gI), which autograd brings back through the same Eq. 3 steps (:mod:`phidice.equations`) that
:func:`phidice.dice_gradient` evaluates in closed form (tested equal). With g_c = gP[b, c] + gI[b, c]·[y = c],

    softmax: ∂L/∂z_c = m·p_c·(g_c − Σ_k p_k g_k)        sigmoid: ∂L/∂z_c = m·g_c·p_c·(1 − p_c)

recomputed voxel by voxel from the logits — neither a one-hot nor the probabilities are stored.

Higher-order gradients (``create_graph=True``: a Hessian, a gradient penalty, meta-learning) take the backward of
the chunked PyTorch path (:func:`phidice.ops.fallback.backward`), which is made of differentiable torch ops, so
that autograd differentiates the gradient itself; the kernels' own backward has no graph. (``once_differentiable``
would not do: its error node hangs off detached copies of the incoming gradients, so a second derivative came
back as "unused", i.e. zeros in ``torch.autograd.functional.hessian``.)
"""

from __future__ import annotations

import torch

from phidice.ops import fallback


class FusedDiceStats(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits, labels, mask, activation, backend):
        """logits (B, C, N), labels (B, N) int64, mask (B, N) or None; ``backend`` a module with forward/backward."""
        inter, pred, tgt, saved_labels = backend.forward(logits, labels, mask, activation)
        ctx.save_for_backward(logits, saved_labels, mask)
        ctx.activation = activation
        ctx.backend = backend
        ctx.mark_non_differentiable(tgt)
        return inter, pred, tgt

    @staticmethod
    def backward(ctx, g_inter, g_pred, g_tgt):
        logits, labels, mask = ctx.saved_tensors
        if not ctx.needs_input_grad[0]:
            return None, None, None, None, None
        if torch.is_grad_enabled():  # create_graph=True: a backward that autograd can differentiate again
            grad = fallback.backward(logits, labels.long(), mask, g_inter, g_pred, ctx.activation)
        else:
            grad = ctx.backend.backward(logits, labels, mask, g_inter, g_pred, ctx.activation)
        return grad, None, None, None, None
