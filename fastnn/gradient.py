"""Numerical gradients by central differences (the book's ``common/gradient.py``).

Same names and semantics as the book: ``x`` is perturbed **in place**, one element at a time,
by ``h = 1e-4``; ``f`` is evaluated at ``x + h e_i`` and ``x - h e_i``; the element is then
restored exactly. ``f`` usually ignores its argument and reads weights that share memory with
``x`` (``lambda W: net.loss(x, t)`` with ``x = net.params['W1']``), which is why ``x`` must be
changed in place and never copied. Non-contiguous views (``A[:, ::2]``) are perturbed through
to the array they view.

The cost is two calls of ``f`` per element; the bookkeeping around them is kept to a plain
indexed loop on a flat view (no ``np.nditer`` object; float64 elements are written through a
``memoryview``), so with a cheap ``f`` this runs several times faster than the book's loop while
giving the same numbers.

When ``f`` is a Numba-compiled function (``@numba.njit``), :func:`numerical_gradient` instead
runs a compiled loop that calls ``f`` directly, in parallel: each thread evaluates ``f`` on its
own copy of ``x`` for a slice of the elements (``x`` itself is then not modified; a Numba
function cannot read NumPy arrays that change behind it anyway: it is a function of its
argument). Same values as the book's loop; the first call with a new ``f`` compiles for about a
second.

The nets' own ``numerical_gradient(x, t)`` methods do not go through this loop at all (see
:mod:`fastnn._numgrad`), and :func:`gradient_check` compares them with backpropagation.

Differences from the book, all deliberate:

* integer, float16, complex and read-only arrays are rejected with a clear error (the book
  would silently truncate the perturbation of an integer array to 0);
* if ``f`` raises, the element being perturbed is restored before the exception propagates.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

__all__ = ["numerical_gradient", "numerical_gradient_2d", "gradient_check", "GradientDiff"]

#: Central-difference step of ``common/gradient.py``.
H = 1e-4

_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


def _check(op, x):
    """Raise unless ``x`` is a writeable float32/float64 ndarray (it is perturbed in place)."""
    if not isinstance(x, np.ndarray):
        raise TypeError(
            f"{op}: x must be a numpy.ndarray (it is perturbed in place), got "
            f"{type(x).__name__}"
        )
    if x.dtype not in _FLOATS:
        if x.dtype.kind in "iub":
            why = f"an {x.dtype} array cannot hold x + h with h = {H}"
        else:
            why = "fastnn computes in float32 or float64"
        raise TypeError(
            f"{op}: x has dtype {x.dtype}; it is perturbed in place and {why}. "
            f"Pass a float array, e.g. x.astype(np.float64)"
        )
    if not x.flags.writeable:
        raise ValueError(f"{op}: x is read-only; it must be perturbed in place")


def _central_difference(f, x):
    """Gradient of ``f`` at ``x`` by perturbing every element of ``x`` in place.

    ``x`` is validated by the caller. Contiguous arrays (either order) are walked through a
    flat view with integer indices; other views through ``np.ndindex`` tuples. Both write into
    ``x``'s own memory.
    """
    if x.flags.c_contiguous:
        order = "C"
    elif x.flags.f_contiguous:
        order = "F"
    else:
        order = None
    if order is None:
        grad = np.zeros(x.shape, dtype=x.dtype)
        xf, gf, indices = x, grad, np.ndindex(x.shape)
    else:
        grad = np.zeros(x.shape, dtype=x.dtype, order=order)
        xf = x.reshape(-1, order=order)  # a view: writes go to x
        gf = grad.reshape(-1, order=order)
        indices = range(x.size)
    h = H
    two_h = 2 * h
    if order is not None and x.dtype == np.float64 and x.dtype.isnative:
        # Python floats through a memoryview: the same IEEE operations as the book's
        # float(tmp) + h and tmp - h, without creating a NumPy scalar per access
        xm = memoryview(xf)
        for i in indices:
            tmp = xm[i]
            try:
                xm[i] = tmp + h
                fxh1 = f(x)
                xm[i] = tmp - h
                fxh2 = f(x)
            finally:
                xm[i] = tmp
            gf[i] = (fxh1 - fxh2) / two_h
        return grad
    for i in indices:
        tmp = xf[i]
        try:
            xf[i] = float(tmp) + h
            fxh1 = f(x)
            xf[i] = tmp - h
            fxh2 = f(x)
        finally:
            xf[i] = tmp
        gf[i] = (fxh1 - fxh2) / two_h
    return grad


def _compiled_central_difference(f, x):
    """:func:`_central_difference` for a Numba-compiled ``f``; None if ``f`` cannot take ``x``."""
    from . import _numgrad

    return _numgrad.callable_numerical_gradient(f, x)


def _is_numba_function(f):
    try:
        from numba.core.registry import CPUDispatcher
    except ImportError:  # pragma: no cover - numba is a dependency
        return False
    return isinstance(f, CPUDispatcher)


def _numerical_gradient_1d(f, x):
    """Central-difference gradient of ``f`` at the vector ``x`` (the book's helper).

    Parameters
    ----------
    f : callable
        ``f(x) -> scalar``.
    x : ndarray of float32 or float64
        Perturbed in place and restored.

    Returns
    -------
    ndarray
        Same shape and dtype as ``x``.

    Shape
    -----
    x: (K,) -> (K,). Other shapes work too (every element is perturbed).
    """
    _check("numerical_gradient", x)
    return _central_difference(f, x)


#: Name of the same helper in the book's ``ch04/gradient_2d.py``.
_numerical_gradient_no_batch = _numerical_gradient_1d


def numerical_gradient(f, x):
    """Central-difference gradient of ``f`` at ``x``, perturbing ``x`` in place.

    For every element ``x[i]``: ``(f(x) at x[i] + h  -  f(x) at x[i] - h) / (2 h)`` with
    ``h = 1e-4``, then ``x[i]`` is restored bit for bit.

    If ``f`` is a Numba-compiled function (a ``numba.njit`` dispatcher) of ``x``, the
    elements are differentiated in parallel by a compiled loop, each thread on its own copy of
    ``x`` (``x`` is not modified then). ``numba.set_num_threads`` sets the number of threads;
    the values do not depend on it.

    Parameters
    ----------
    f : callable
        ``f(x) -> scalar``. Usually ignores its argument and reads weights that are (or share
        memory with) ``x``.
    x : ndarray of float32 or float64
        Any shape, any strides. Modified during the call (through views, too) and restored
        exactly before returning.

    Returns
    -------
    grad : ndarray
        Same shape and dtype as ``x``.

    Raises
    ------
    TypeError
        If ``x`` is not a float32/float64 ``ndarray``.
    ValueError
        If ``x`` is read-only.

    Shape
    -----
    x: any -> grad: same shape.

    Examples
    --------
    >>> import numpy as np
    >>> W = np.array([[1.0, 2.0], [3.0, 4.0]])
    >>> g = numerical_gradient(lambda _: np.sum(W**2), W)
    >>> np.allclose(g, 2 * W)
    True
    """
    _check("numerical_gradient", x)
    if x.size and _is_numba_function(f):
        grad = _compiled_central_difference(f, x)
        if grad is not None:
            return grad
    return _central_difference(f, x)


def numerical_gradient_2d(f, X):
    """Row-wise numerical gradient (the book's ``ch04/gradient_2d.py``).

    For 1-D ``X`` this is :func:`numerical_gradient`. For a batch, each row ``X[i]`` is
    treated as its own point: ``f`` is called with the row (a view into ``X``), and row ``i``
    of the result is the gradient of ``f`` at ``X[i]``.

    Parameters
    ----------
    f : callable
        ``f(x) -> scalar`` for one row ``x``.
    X : ndarray of float32 or float64
        Points, one per row; perturbed in place and restored.

    Returns
    -------
    grad : ndarray
        Same shape and dtype as ``X``.

    Shape
    -----
    X: (K,) or (N, K) -> same shape.

    Examples
    --------
    >>> import numpy as np
    >>> X = np.array([[3.0, 4.0], [0.0, 2.0]])
    >>> np.round(numerical_gradient_2d(lambda x: np.sum(x**2), X), 6)
    array([[6., 8.],
           [0., 4.]])
    """
    _check("numerical_gradient_2d", X)
    if X.ndim <= 1:
        return _central_difference(f, X)
    grad = np.zeros_like(X)
    for idx in range(X.shape[0]):
        grad[idx] = _central_difference(f, X[idx])
    return grad


# --------------------------------------------------------------------------- gradient check
class GradientDiff(NamedTuple):
    """Absolute difference between two gradients of one parameter."""

    #: ``np.average(np.abs(backprop - numerical))``, the number the book's scripts print.
    mean: float
    #: ``np.max(np.abs(backprop - numerical))``.
    max: float


def gradient_check(net, x, t, verbose=True):
    """Compare a net's backpropagation with its numerical gradient, as the book's
    ``gradient_check.py`` scripts (ch05, ch06, ch07) do.

    Calls ``net.numerical_gradient(x, t)`` and then ``net.gradient(x, t)`` (the book's order),
    and for each parameter key computes the mean and the max of ``|backprop - numerical|``.
    With ``verbose`` one line per key is printed, ``W1:3.2e-10`` in the book's format
    followed by the maximum.

    For nets with dropout (``MultiLayerNetExtend(use_dropout=True)``) NumPy's RNG state is
    restored before the backward pass, so both gradients see the same dropout masks.

    Parameters
    ----------
    net : object
        Any net with ``params``, ``gradient(x, t)`` and ``numerical_gradient(x, t)`` (every
        net of :mod:`fastnn.nets`, or the book's own).
    x, t : array_like
        A (small) batch: inputs and targets, as for ``net.loss``.
    verbose : bool, default True
        Print the differences.

    Returns
    -------
    dict
        ``{key: GradientDiff(mean, max)}`` in the order of the gradients' keys.

    Raises
    ------
    TypeError
        If ``net`` lacks ``gradient`` / ``numerical_gradient``.
    ValueError
        If the two gradient dicts have different keys or shapes.

    Examples
    --------
    >>> import numpy as np
    >>> from fastnn.nets import TwoLayerNet
    >>> np.random.seed(0)
    >>> net = TwoLayerNet(4, 3, 2)
    >>> x = np.random.rand(2, 4); t = np.array([0, 1])
    >>> diffs = gradient_check(net, x, t, verbose=False)
    >>> all(d.max < 1e-7 for d in diffs.values())
    True
    """
    for name in ("gradient", "numerical_gradient"):
        if not callable(getattr(net, name, None)):
            raise TypeError(
                f"gradient_check: net must have a {name}(x, t) method; got "
                f"{type(net).__name__}"
            )
    state = np.random.get_state() if getattr(net, "use_dropout", False) else None
    grad_numerical = net.numerical_gradient(x, t)
    if state is not None:
        np.random.set_state(state)
    grad_backprop = net.gradient(x, t)
    if set(grad_numerical) != set(grad_backprop):
        raise ValueError(
            f"gradient_check: numerical_gradient returned keys {sorted(grad_numerical)} but "
            f"gradient returned {sorted(grad_backprop)}"
        )
    diffs = {}
    for key in grad_backprop:
        a = np.asarray(grad_backprop[key])
        b = np.asarray(grad_numerical[key])
        if a.shape != b.shape:
            raise ValueError(
                f"gradient_check: {key} has shape {a.shape} by backprop but {b.shape} "
                f"numerically"
            )
        d = np.abs(a - b)
        if d.size:
            diffs[key] = GradientDiff(float(np.average(d)), float(np.max(d)))
        else:
            diffs[key] = GradientDiff(0.0, 0.0)
        if verbose:
            print(f"{key}:{diffs[key].mean} (max {diffs[key].max:.3g})")
    return diffs
