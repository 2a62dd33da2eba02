"""Input validation shared by :mod:`fastnn.functional` (and the layers built on it).

Every error names the op (``"conv2d: ..."``) and the offending shapes or values, so a learner
sees what to fix instead of a Numba typing traceback.
"""

from __future__ import annotations

import numbers
import operator

import numpy as np

_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


def _dtype_of(op: str, name: str, a: np.ndarray) -> np.dtype:
    """The float dtype ``a`` computes in: float32/float64 as is, ints and bools as float64."""
    dt = a.dtype if a.dtype.isnative else a.dtype.newbyteorder("=")
    if dt in _FLOATS:
        return dt
    if dt.kind in "iub":
        return np.dtype(np.float64)
    if dt.kind == "f":
        raise TypeError(
            f"{op}: {name} has dtype {dt}; fastnn computes in float32 or float64 "
            f"(convert with {name}.astype(np.float32) or np.float64)"
        )
    raise TypeError(f"{op}: {name} has unsupported dtype {dt}; expected a real numeric array")


def as_array(op: str, name: str, a) -> np.ndarray:
    """``np.asarray(a)``, rejecting ``None`` and ragged input with a clear error."""
    if a is None:
        raise TypeError(f"{op}: {name} is None; expected an array")
    try:
        return np.asarray(a)
    except (ValueError, TypeError) as exc:
        raise TypeError(f"{op}: {name} cannot be converted to an array ({exc})") from None


_F32, _F64 = _FLOATS


def result_dtype(op: str, **arrays: np.ndarray) -> np.dtype:
    """NumPy promotion over the float dtypes of ``arrays`` (``None`` entries are skipped)."""
    # fast path: every array already float32, or every one float64 (the builtin dtype
    # objects); the general promotion costs microseconds, as much as a small kernel
    first = None
    for v in arrays.values():
        if v is None:
            continue
        dt = v.dtype
        if first is None:
            if dt is not _F32 and dt is not _F64:
                break
            first = dt
        elif dt is not first:
            break
    else:
        if first is not None:
            return first
    dts = [_dtype_of(op, k, v) for k, v in arrays.items() if v is not None]
    return np.result_type(*dts)


def as_float(a: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Writable C-contiguous array of ``dtype``; no copy when ``a`` already is one (0-d stays
    0-d). Read-only inputs are copied, so kernels compile one signature per dtype only."""
    out = np.asarray(a, dtype=dtype, order="C")
    if not out.flags.writeable:
        out = out.copy()
    return out


def check_ndim(op: str, name: str, a: np.ndarray, ndim: int, layout: str) -> None:
    if a.ndim != ndim:
        raise ValueError(f"{op}: {name} must be {ndim}-D {layout}, got shape {a.shape}")


def check_not_empty(op: str, name: str, a: np.ndarray) -> None:
    if a.size == 0:
        raise ValueError(f"{op}: {name} is empty (shape {a.shape})")


def as_int(op: str, name: str, v, minimum: int) -> int:
    """``v`` as a Python int ``>= minimum``; bools and floats with a fraction are rejected."""
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (numbers.Integral, np.integer)):
        if isinstance(v, (float, np.floating)) and float(v).is_integer():
            v = int(v)
        else:
            raise TypeError(f"{op}: {name} must be an integer, got {v!r}")
    v = operator.index(v)
    if v < minimum:
        rule = "positive" if minimum == 1 else f">= {minimum}"
        raise ValueError(f"{op}: {name} must be {rule}, got {v}")
    return v


def window_output_size(op: str, in_hw, win_hw, stride: int, pad: int, what: str):
    """``(OH, OW)`` of a sliding window; errors when the window exceeds the padded input."""
    H, W = in_hw
    FH, FW = win_hw
    if FH > H + 2 * pad or FW > W + 2 * pad:
        raise ValueError(
            f"{op}: {what} {FH}x{FW} is larger than the padded input "
            f"{H + 2 * pad}x{W + 2 * pad} (input {H}x{W}, pad {pad})"
        )
    return (H + 2 * pad - FH) // stride + 1, (W + 2 * pad - FW) // stride + 1


def as_shape4(op: str, name: str, shape) -> tuple:
    try:
        shape = tuple(operator.index(s) for s in shape)
    except TypeError:
        raise TypeError(f"{op}: {name} must be a tuple of 4 ints, got {shape!r}") from None
    if len(shape) != 4 or min(shape) < 0:
        raise ValueError(f"{op}: {name} must be 4 non-negative ints (N, C, H, W), got {shape}")
    return shape


def as_labels(op: str, t: np.ndarray, N: int, K: int) -> np.ndarray:
    """Integer class labels of shape ``(N,)`` or ``(N, 1)`` as a contiguous ``intp`` vector."""
    if t.dtype.kind == "b" or t.dtype.kind not in "iuf":
        raise TypeError(f"{op}: labels t must be integers, got dtype {t.dtype}")
    if not (t.shape == (N,) or t.shape == (N, 1)):
        raise ValueError(
            f"{op}: labels t must have shape ({N},) or ({N}, 1) or be one-hot ({N}, {K}); "
            f"got {t.shape}"
        )
    flat = t.reshape(-1)
    if t.dtype.kind == "f":
        if not np.all(np.isfinite(flat)) or not np.all(flat == np.round(flat)):
            raise TypeError(f"{op}: labels t must be integers, got non-integer values ({t.dtype})")
    if flat.size and (flat.min() < 0 or flat.max() >= K):
        raise ValueError(
            f"{op}: labels t must be in [0, {K}), got values in [{flat.min()}, {flat.max()}]"
        )
    return np.ascontiguousarray(flat, dtype=np.intp)
