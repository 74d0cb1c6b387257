"""Where the classes are: channels-last (B, *spatial, C), Keras's default, or channels-first (B, C, *spatial).

The losses check shapes in the caller's layout (errors show the caller's shapes) and then move the classes
last; everything after that — the sums, the cross-entropy — is written once, channels-last.
"""

from __future__ import annotations

import keras
from keras import ops

LAST = "channels_last"
FIRST = "channels_first"


def standardize_data_format(data_format) -> str:
    """``data_format`` as "channels_last" or "channels_first"; None: ``keras.config.image_data_format()``."""
    if data_format is None:
        return keras.config.image_data_format()
    value = str(data_format).lower()
    if value not in (LAST, FIRST):
        raise ValueError(f"data_format must be one of 'channels_last', 'channels_first' or None; got {data_format!r}")
    return value


class Layout:
    def __init__(self, data_format: str):
        self.first = data_format == FIRST

    @property
    def axis_name(self) -> str:
        """The class axis in words, for errors about per-class vectors."""
        return "axis 1" if self.first else "the last axis"

    @property
    def pred(self) -> str:
        return "(B, C, *spatial)" if self.first else "(B, *spatial, C)"

    @property
    def labels(self) -> str:
        return "(B, *spatial) or (B, 1, *spatial)" if self.first else "(B, *spatial) or (B, *spatial, 1)"

    def channels(self, shape):
        return shape[1] if self.first else shape[-1]

    def spatial(self, shape) -> tuple:
        return tuple(shape[2:]) if self.first else tuple(shape[1:-1])

    def squeeze_channel(self, x):
        return ops.squeeze(x, axis=1 if self.first else -1)

    def to_last(self, x):
        """``x`` with its class axis last (unchanged for channels-last)."""
        return ops.moveaxis(x, 1, -1) if self.first else x
