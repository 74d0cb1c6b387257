"""The fits that hold :class:`phidice.keras.GradientMonitorCallback` to :class:`phidice.GradientMonitor`: NumPy
only, read by the back ends' worker (which runs the Keras fit) and by the test (which runs the PyTorch monitor
on the same batches).

Each fit trains a one-layer network with SGD at learning rate 0, so the logits the train steps see are those of
``model.predict`` afterwards; 6 training images in 2 batches of 3, 3 validation images, C = 3. Class 2 is absent
from the first 3 training images and the first validation image (empty maps under Φ = I, not under Φ = BI).
"""

from __future__ import annotations

import numpy as np

C = 3
BATCH = 3
EPOCHS = 2
SHAPE = (8, 8)
# name: (loss class, options shared by both frameworks, labels_superset_map or None)
FITS = {
    "dice_I": ("DiceLoss", {"phi": "I", "eps": 1e-5}, None),
    "dice_ce_BI": ("DiceCELoss", {"phi": "BI", "include_background": False, "ignore_index": 255}, None),
    "leaf_supersets": ("LeafDiceLoss", {"phi": "I", "eps": 1e-3}, {3: [0, 2]}),
}


def data(name: str):
    """(x, labels, x_val, labels_val): channels-last float32 images (n, 8, 8, 1), integer labels (n, 8, 8)."""
    rng = np.random.default_rng(7)
    x = rng.normal(size=(9, *SHAPE, 1)).astype("float32")
    labels = np.digitize(x[..., 0], [0.0, 0.8]).astype("int32")
    labels[[0, 1, 2, 6]] = np.minimum(labels[[0, 1, 2, 6]], 1)  # no class 2 in these
    if name == "dice_ce_BI":
        labels[:, :2, :2] = 255  # ignored voxels: the counted N of each map is smaller
    if name == "leaf_supersets":
        labels[[3, 7]] = np.where(labels[[3, 7]] == 1, 1, 3)  # class 2 unannotated there: "0 or 2"
    return x[:6], labels[:6], x[6:], labels[6:]
