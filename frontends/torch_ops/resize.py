"""ATen upsampling: nearest, nearest-exact, (bi/tri)linear and bicubic (antialiased too), to a size or by scale factors.

Every overload becomes one ``resize`` node with the static output size and
the scale factors torch was given (which its coordinate mapping uses instead
of ``out/in``). The ``.vec`` overloads take a size or per-dim factors; the
others a size and one optional factor per dim (export keeps them for nearest
and antialiased modes only: the other interpolating ones are decomposed while
tracing). Spatial sizes must be static: the interpolation weights are computed
when the graph is traced.
"""

from __future__ import annotations

from unigraph.frontends.torch_ops import aten, handles
from unigraph.frontends.builder import Builder, TensorRef


def _resize(b: Builder, x: TensorRef, output_size, scales, method: str, align_corners: bool = False, antialias: bool = False):
    """A ``resize`` node to ``output_size``, or to ``floor(size * scale)`` when only scales are given."""
    n = len(output_size if output_size is not None else scales)
    sizes = x.shape[-n:]
    if not all(isinstance(s, int) for s in sizes):
        raise NotImplementedError(f"resizing dynamic spatial dims {list(sizes)}: spatial sizes must be static")
    if output_size is not None and not all(isinstance(s, int) for s in output_size):
        raise NotImplementedError(f"resizing to dynamic sizes {list(output_size)}: output sizes must be static")
    if scales is not None and all(s is None for s in scales):
        scales = None
    if output_size is None:  # torch: static_cast<int64_t>(size * scale)
        output_size = [int(s * f) for s, f in zip(sizes, scales)]
    return b.emit(
        "resize",
        x,
        sizes=tuple(output_size),
        method=method,
        align_corners=bool(align_corners),
        scales=None if scales is None else tuple(None if s is None else float(s) for s in scales),
        antialias=antialias,
    )


def _register_nearest(method: str, *packets) -> None:
    def vec(b: Builder, input, output_size, scale_factors):
        return _resize(b, input, output_size, scale_factors, method)

    def default(b: Builder, input, output_size, *scales):
        return _resize(b, input, output_size, scales, method)

    vec.__doc__ = f"aten::upsample_nearest2d.vec(Tensor input, SymInt[]? output_size, float[]? scale_factors) ({method})."
    default.__doc__ = f"aten::upsample_nearest2d(Tensor self, SymInt[2] output_size, float? scales_h=None, float? scales_w=None) ({method})."
    for packet in packets:
        handles(packet.vec)(vec)
        handles(packet.default)(default)


def _register_interpolating(method: str, *packets) -> None:
    def vec(b: Builder, input, output_size, align_corners, scale_factors):
        return _resize(b, input, output_size, scale_factors, method, align_corners)

    vec.__doc__ = (
        "aten::upsample_bilinear2d.vec(Tensor input, SymInt[]? output_size, bool align_corners, "
        f"float[]? scale_factors) ({method})."
    )
    for packet in packets:
        handles(packet.vec)(vec)


_register_nearest("nearest", aten.upsample_nearest1d, aten.upsample_nearest2d, aten.upsample_nearest3d)
_register_nearest(
    "nearest_exact", aten._upsample_nearest_exact1d, aten._upsample_nearest_exact2d, aten._upsample_nearest_exact3d
)
_register_interpolating("linear", aten.upsample_linear1d, aten.upsample_bilinear2d, aten.upsample_trilinear3d)
_register_interpolating("cubic", aten.upsample_bicubic2d)


def _register_antialiased(method: str, packet) -> None:
    def vec(b: Builder, input, output_size, align_corners, scale_factors):
        return _resize(b, input, output_size, scale_factors, method, align_corners, antialias=True)

    def default(b: Builder, input, output_size, align_corners, scales_h=None, scales_w=None):
        return _resize(b, input, output_size, (scales_h, scales_w), method, align_corners, antialias=True)

    vec.__doc__ = (
        "aten::_upsample_bicubic2d_aa.vec(Tensor input, SymInt[]? output_size, bool align_corners, "
        f"float[]? scale_factors) ({method}, antialiased)."
    )
    default.__doc__ = (
        "aten::_upsample_bicubic2d_aa(Tensor self, SymInt[2] output_size, bool align_corners, "
        f"float? scales_h=None, float? scales_w=None) ({method}, antialiased)."
    )
    handles(packet.vec)(vec)
    handles(packet.default)(default)


_register_antialiased("linear", aten._upsample_bilinear2d_aa)
_register_antialiased("cubic", aten._upsample_bicubic2d_aa)
