"""IR types: tensors (dtype + shape with symbolic dims) and Python scalars (NEP 50 'weak' constants)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from prepjit.ir import dims as D

# MLIR-style element type names.
DTYPE_NAMES = {
    np.dtype(np.bool_): "i1",
    np.dtype(np.int8): "si8",
    np.dtype(np.int16): "si16",
    np.dtype(np.int32): "si32",
    np.dtype(np.int64): "si64",
    np.dtype(np.uint8): "ui8",
    np.dtype(np.uint16): "ui16",
    np.dtype(np.uint32): "ui32",
    np.dtype(np.uint64): "ui64",
    np.dtype(np.float32): "f32",
    np.dtype(np.float64): "f64",
}
NAME_DTYPES = {v: k for k, v in DTYPE_NAMES.items()}
SUPPORTED_DTYPES = tuple(DTYPE_NAMES)


def dtype_name(dt) -> str:
    return DTYPE_NAMES[np.dtype(dt)]


def check_dtype(dt) -> np.dtype:
    """Normalize a dtype-like to a supported native-endian numpy dtype, or raise TypeError."""
    try:
        d = np.dtype(dt)
    except TypeError as e:
        raise TypeError(f"{dt!r} is not a dtype") from e
    if d not in DTYPE_NAMES:
        supported = ", ".join(str(x) for x in SUPPORTED_DTYPES)
        raise TypeError(f"dtype {d} is not supported (supported: {supported})")
    return d


class Type:
    __slots__ = ()


@dataclass(frozen=True, slots=True)
class TensorType(Type):
    dtype: np.dtype
    shape: tuple  # of int | Dim

    @property
    def rank(self) -> int:
        return len(self.shape)

    def __str__(self):
        dims = "".join(("?" if not isinstance(d, int) else str(d)) + "x" for d in self.shape)
        return f"tensor<{dims}{dtype_name(self.dtype)}>"

    def with_shape(self, shape) -> "TensorType":
        return TensorType(self.dtype, tuple(shape))


@dataclass(frozen=True, slots=True, eq=False)
class PyScalarType(Type):
    """A Python int/float/bool constant: 'weak' under NEP 50, so the array operand decides the result dtype."""

    kind: type  # int, float or bool
    value: object = None

    def __str__(self):
        return f"!py.{self.kind.__name__}<{format_scalar(self.value)}>"

    def __eq__(self, other):  # NaN-safe, and 1 != 1.0 != True here
        return isinstance(other, PyScalarType) and self.kind is other.kind and repr(self.value) == repr(other.value)

    def __hash__(self):
        return hash((self.kind, repr(self.value)))


def format_scalar(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return repr(v)  # 'inf', '-inf', 'nan' parse back through float()
    return str(v)


def shape_str(shape) -> str:
    return "(" + ", ".join(D.to_str(d) for d in shape) + ("," if len(shape) == 1 else "") + ")"


class BytesType(Type):
    """Encoded bytes (e.g. a JPEG file) passed as an argument; only host ops such as ``image.decode`` read it."""

    __slots__ = ()

    def __str__(self):
        return "!py.bytes"

    def __eq__(self, other):
        return isinstance(other, BytesType)

    def __hash__(self):
        return hash("!py.bytes")


BYTES = BytesType()


@dataclass(frozen=True, slots=True)
class TextType(Type):
    """An intermediate value of the ``text`` dialect (``!text.segments``, ``!text.words``, ``!text.ids``,
    ``!text.seqs``, ``!text.encoding``): a host-side Python value in the reference interpreter, never lowered —
    the ``fuse_text`` pass turns whole chains into one native op."""

    kind: str

    def __str__(self):
        return f"!text.{self.kind}"
