"""torch lowerings: ``resize`` with torch's ``upsample_*`` kernels (what ``F.interpolate`` calls).

The op gives both the output sizes and the scale factors the caller gave
(None: not given), which torch's kernels take separately for the coordinate
mapping, so they are called directly (``F.interpolate`` takes one or the
other). They need ``(N, C, *spatial)``: channels-last activations are moved
to channels-first around the call, an unbatched input gets a batch axis, extra
leading axes are flattened into one. Modes torch has no kernel for (cubic
other than 2-d, more than 3 spatial dims) resample one dim at a time, the
last first as the op does, with the 1-d kernels (cubic: the 2-d kernel over a
size-1 dim, whose weights there are exactly 0 and 1). Antialiased resizing
has 2-d kernels only (what ``F.interpolate(..., antialias=True)`` calls); other
ranks use them over a size-1 dim, which they leave as it is.
"""

from __future__ import annotations

import torch

from unigraph.backends.torch_ops import lowers


def _native(y, sizes, method, align_corners, scales, antialias):
    """``y`` (``(N, C, *spatial)``) resampled by torch's kernel for ``method`` and ``len(sizes)`` dims."""
    aten = torch.ops.aten
    n = len(sizes)
    if antialias:
        kernel = aten._upsample_bilinear2d_aa if method == "linear" else aten._upsample_bicubic2d_aa
        if n == 1:  # over (1, L): a dim whose size does not change is copied
            return kernel.default(y.unsqueeze(-2), (1, *sizes), align_corners, None, *scales).squeeze(-2)
        return kernel.default(y, sizes, align_corners, *scales)
    if method == "nearest":
        kernel = (aten.upsample_nearest1d, aten.upsample_nearest2d, aten.upsample_nearest3d)[n - 1]
        return kernel.default(y, sizes, *scales)
    if method == "nearest_exact":
        kernel = (aten._upsample_nearest_exact1d, aten._upsample_nearest_exact2d, aten._upsample_nearest_exact3d)[n - 1]
        return kernel.default(y, sizes, *scales)
    if method == "linear":
        kernel = (aten.upsample_linear1d, aten.upsample_bilinear2d, aten.upsample_trilinear3d)[n - 1]
        return kernel.default(y, sizes, align_corners, *scales)
    if n == 1:  # cubic: bicubic over (1, L); the size-1 dim's taps are all row 0, weighted 0, 1, 0, 0
        return aten.upsample_bicubic2d.default(y.unsqueeze(-2), (1, *sizes), align_corners, None, *scales).squeeze(-2)
    return aten.upsample_bicubic2d.default(y, sizes, align_corners, *scales)


@lowers("resize")
def resize(x, /, *, sizes, method, align_corners=False, scales=None, channels_last=False, antialias=False):
    n = len(sizes)
    scales = tuple(scales) if scales else (None,) * n
    y = x.movedim(-1, -n - 1) if channels_last else x
    lead = y.shape[: y.ndim - n - 1]  # the axes before the channel axis
    y = y.reshape(-1, *y.shape[y.ndim - n - 1 :]) if len(lead) != 1 else y
    if n <= 2 or (n == 3 and method != "cubic" and not antialias):  # a torch kernel for all dims at once
        y = _native(y, sizes, method, align_corners, scales, antialias)
    else:
        for axis in reversed(range(n)):  # one spatial dim at a time, the last first
            moved = y.movedim(2 + axis, -1)
            rows = moved.reshape(-1, 1, moved.shape[-1])
            rows = _native(rows, sizes[axis : axis + 1], method, align_corners, scales[axis : axis + 1], antialias)
            y = rows.reshape(*moved.shape[:-1], sizes[axis]).movedim(-1, 2 + axis)
    y = y.reshape(*lead, *y.shape[1:]) if len(lead) != 1 else y
    return y.movedim(-n - 1, -1) if channels_last else y
