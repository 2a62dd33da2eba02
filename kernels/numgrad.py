"""Numerical-gradient kernels: the book's central differences, one parameter per work item.

Every kernel here computes, for each parameter ``theta_i`` of one layer,

    (f(theta + h e_i) - f(theta - h e_i)) / (2 h),      h = 1e-4,

where ``f`` is the book's mean softmax cross-entropy ``-mean(log(y[t] + 1e-7))`` and
``theta +- h e_i`` holds exactly the floating values the book stores (``w + h`` and ``w - h``).
They do not rerun the whole forward pass for each of the ``2 P`` perturbed nets. A
perturbation of one parameter changes one column of one layer's output; everything that does
not depend on it is taken from the unperturbed forward pass (computed once by the caller), and
only what changes is recomputed:

* ``W[i, j]`` / ``b[j]`` of a fully connected layer moves the pre-activation ``a[n, j]`` by
  ``((w + h) - w) * z_prev[n, i]``: only the samples with ``z_prev[n, i] != 0`` move (without
  batch norm), only hidden unit ``j`` of those samples, and a ReLU unit that stays inactive on
  both sides changes nothing;
* with batch normalization the column's batch statistics are recomputed (all samples of the
  column move), then the rest of the net (:func:`_tail`, batch statistics of every later layer
  recomputed);
* a changed hidden unit ``j`` of the **last** hidden layer moves every logit of sample ``n`` by
  ``dz * W_L[j, :]``. The new softmax denominator ``sum_k e_k exp(dz w_k)`` is evaluated from
  per-``(n, j)`` moments ``M_p = sum_k e_k w_k**p / p!`` as ``sum_p M_p dz**p``, and the
  label's numerator ``e_t exp(dz w_t)`` by the Taylor polynomial of ``exp``, with the degree
  (2, 4 or 6) chosen so that the truncation is below ``2**-60`` relative for ``u = |dz|
  max_k |w_k|`` (up to ``u <= 2**-7``; beyond, from the logits directly);
* in that layer without batch norm (:func:`numgrad_fc_last_hidden_sparse_kernel`, the
  TwoLayerNet case) the loop runs sample by sample: a ReLU unit that stays active moves by
  ``(a + d) - a`` exactly, one that stays inactive for every step is skipped, and a sigmoid
  unit moves by ``sigma(a + d) - sigma(a) = sum_k sigma^(k)(a) / k! d**k`` with the
  coefficients written in ``u = z (1 - z)`` (no cancellation) and the degree (4 or 6) again
  chosen from a bound on the step; steps outside those ranges (or ReLU units that may switch)
  are evaluated directly;
* a parameter of the output layer moves a single logit (``S + e_k expm1(u)``);
* a convolution filter element moves one output channel, which is re-activated and
  re-pooled; the pooled change then goes through the fully connected tail.

The Taylor polynomials are evaluations of ``exp`` and of the sigmoid to full double precision
on short intervals (as a libm ``exp`` is a polynomial after range reduction), not an expansion
of the loss in ``h``: every value is the real loss at ``theta +- h e_i``.

Each sample's contribution is the exact per-sample loss difference ``l_n(+) - l_n(-)``; the
samples a perturbation cannot reach contribute exactly zero, as they do mathematically to the
book's ``f(+) - f(-)``. ``l_n(+) - l_n(-) = log((p_-(n) + eps) / (p_+(n) + eps))`` is
accumulated as products of the numerators and denominators of those ratios (scaled by the
sample's unperturbed value where the factors are near 1) and one ``log`` per parameter,
renormalised long before a product could overflow. The results agree with the book's loop to
about 1e-12 (the book's own rounding noise: ``f`` is about 2.3, its rounding 4e-16, divided by
``2 h``).

Rare, general cases (large steps, switching ReLUs) call non-inlined helpers outside the hot
loops: a call with array arguments inside a hot loop made the whole loop about 2x slower.

Work is parallel over the columns (hidden units, output classes, filters) of one layer: each
``prange`` iteration calls one serial per-column function, which owns its scratch arrays and
writes only its own column of the gradient, so results do not depend on the number of
threads. float64 only (the nets' float32 variant uses the book's loop: a float32 central
difference carries ~5e-4 of rounding noise that no other evaluation order would reproduce).

:func:`numgrad_callable_kernel` is the generic path for a Numba-compiled ``f(x)``: it is
compiled once per ``f`` (Numba cannot cache functions that take a function argument, and a
``prange`` version took 2-4 s to compile per ``f`` against 0.4 s), so it is a serial,
GIL-free loop over a slice of the elements on a private copy of ``x``; the caller runs one
slice per thread.
"""

from __future__ import annotations

import math

import numpy as np
from numba import prange

from ._jit import njit

__all__ = [
    "ACT_RELU",
    "ACT_SIGMOID",
    "act_forward_kernel",
    "bn_forward_kernel",
    "sigmoid_aux_kernel",
    "softmax_cache_kernel",
    "numgrad_fc_output_kernel",
    "numgrad_fc_last_hidden_kernel",
    "numgrad_fc_last_hidden_sparse_kernel",
    "numgrad_fc_hidden_kernel",
    "numgrad_conv_kernel",
    "numgrad_callable_kernel",
    "running_stat_kernel",
]

#: Activation codes.
ACT_RELU = 0
ACT_SIGMOID = 1

#: ``|u|`` up to which ``exp(u)`` / ``expm1(u)`` use their degree-6 Taylor polynomial
#: (truncation ``u**7 / 7! < 4e-19``).
EXP_SERIES_MAX = 1.0 / 128.0
#: Number of softmax moments ``M_0 .. M_6``.
N_MOMENTS = 7
#: Largest logit change for which ``e_k * exp(da_k)`` (cached, max-shifted ``e_k <= 1``) is
#: used; beyond it the row's softmax is recomputed from its logits.
SHIFT_MAX = 30.0
#: Largest single-logit change for which ``S + e_k * expm1(u)`` is used (no cancellation:
#: ``expm1(u) >= -0.64``).
SINGLE_SHIFT_MAX = 1.0
_BIG = 1e150
_SMALL = 1e-150


# --------------------------------------------------------------------------- scalar helpers
@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _act(s, act):
    """ReLU (the book's: 0 where ``s <= 0``) or sigmoid ``1 / (1 + exp(-s))``."""
    if act == 0:
        if s <= 0.0:
            return 0.0
        return s
    return 1.0 / (1.0 + np.exp(-s))  # np.exp: inf, not OverflowError, under NUMBA_DISABLE_JIT


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _expm1_series(u):
    """``u + u**2/2! + ... + u**6/6!``, nested so that each term is rounded once."""
    q = 1.0 + u * 0.2 * (1.0 + u * (1.0 / 6.0))
    return u * (1.0 + u * 0.5 * (1.0 + u * (1.0 / 3.0) * (1.0 + u * 0.25 * q)))


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _exp_small(u):
    """``exp(u)``; a Taylor polynomial (exact to rounding) when ``|u| <= EXP_SERIES_MAX``."""
    if abs(u) <= EXP_SERIES_MAX:
        return 1.0 + _expm1_series(u)
    return math.exp(u)


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _expm1_small(u):
    """``expm1(u)``; a Taylor polynomial (exact to rounding) when ``|u| <= EXP_SERIES_MAX``."""
    if abs(u) <= EXP_SERIES_MAX:
        return _expm1_series(u)
    return math.expm1(u)


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _sigmoid_delta(d, e, omz):
    """``sigmoid(a + d) - sigmoid(a)`` from ``e = exp(-a)`` and ``omz = 1 - sigmoid(a)``.

    ``1/(1 + e q) - 1/(1 + e)`` with ``q = exp(-d)`` is ``omz * (1 - q) / (1 + e q)``: no
    cancellation, and no ``exp`` for small ``d`` (``1 - q = -expm1(-d)`` by its series).
    """
    m = -_expm1_small(-d)
    return omz * m / (1.0 + e * (1.0 - m))


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _ratio(num_p, s_p, num_m, s_m, ce_eps):
    """``(p_- + eps) / (p_+ + eps)`` with ``p = num / s``: ``exp(l_+ - l_-)`` of one sample."""
    return (num_m + ce_eps * s_m) * s_p / ((num_p + ce_eps * s_p) * s_m)


@njit(cache=True, nogil=True, error_model="numpy")
def _bn_column(a, gamma, beta, eps, xn, s):
    """The book's training-mode batch norm of one column: ``s = gamma * xn + beta``.

    Also the unperturbed forward (:func:`bn_forward_kernel`), so an unchanged column is
    reproduced bit for bit. Returns ``(mean, var)``.
    """
    N = a.shape[0]
    mu = 0.0
    for n in range(N):
        mu += a[n]
    mu = mu / N
    var = 0.0
    for n in range(N):
        d = a[n] - mu
        var += d * d
    var = var / N
    std = math.sqrt(var + eps)
    for n in range(N):
        v = (a[n] - mu) / std
        xn[n] = v
        s[n] = gamma * v + beta
    return mu, var


@njit(cache=True, nogil=True, error_model="numpy")
def _logits_eval(n, da, AL, E, S, labels):
    """``(num, den)`` with ``num / den`` = softmax probability of the label of sample ``n``
    after its logits moved by ``da`` (K,)."""
    K = AL.shape[1]
    t = labels[n]
    big = 0.0
    for k in range(K):
        v = abs(da[k])
        if v > big:
            big = v
    if big <= SHIFT_MAX:
        den = 0.0
        for k in range(K):
            den += E[n, k] * math.exp(da[k])
        return E[n, t] * math.exp(da[t]), den
    m = -np.inf
    for k in range(K):
        v = AL[n, k] + da[k]
        if v > m:
            m = v
    den = 0.0
    for k in range(K):
        den += math.exp(AL[n, k] + da[k] - m)
    return math.exp(AL[n, t] + da[t] - m), den


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _single_logit_eval(n, k, u, AL, E, S, labels):
    """``(num, den)`` for sample ``n`` after logit ``k`` alone moved by ``u``."""
    t = labels[n]
    if abs(u) <= SINGLE_SHIFT_MAX:
        em = _expm1_small(u)
        den = S[n] + E[n, k] * em
        if t == k:
            return E[n, t] + E[n, t] * em, den
        return E[n, t], den
    K = AL.shape[1]
    m = -np.inf
    for q in range(K):
        v = AL[n, q] + u if q == k else AL[n, q]
        if v > m:
            m = v
    den = 0.0
    for q in range(K):
        v = AL[n, q] + u if q == k else AL[n, q]
        den += math.exp(v - m)
    vt = AL[n, t] + u if t == k else AL[n, t]
    return math.exp(vt - m), den


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _param_value(i, Din, j, W, b, gamma, beta):
    """Parameter ``i`` of column ``j``: ``W[i, j]`` (``i < Din``), ``b[j]``, ``gamma[j]`` or
    ``beta[j]``."""
    if i < Din:
        return W[i, j]
    if i == Din:
        return b[j]
    if i == Din + 1:
        return gamma[j]
    return beta[j]


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _store(i, Din, j, g, gW, gb, ggamma, gbeta):
    """Write the gradient ``g`` of parameter ``i`` of column ``j`` (see :func:`_param_value`)."""
    if i < Din:
        gW[i, j] = g
    elif i == Din:
        gb[j] = g
    elif i == Din + 1:
        ggamma[j] = g
    else:
        gbeta[j] = g


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _column_deltas(
    i, Din, w, wp, wm, ptr, idx, val, acol, zcol, ecol, omzcol, act, use_bn, g, bb, xncol,
    bn_eps, ap, sb, xb, rows, dzp, dzm,
):
    """Change of a hidden layer's activations ``z[:, j]`` when parameter ``i`` of column ``j``
    (value ``w``) is replaced by ``wp`` (-> ``dzp``) or by ``wm`` (-> ``dzm``).

    ``ptr/idx/val`` hold the nonzeros of the layer's input by column; column ``Din`` is the
    bias' column of ones. ``i == Din + 1`` / ``Din + 2`` are ``gamma[j]`` / ``beta[j]``.
    For a sigmoid layer without batch norm ``ecol = exp(-a)`` and ``omzcol = 1 - z`` (see
    :func:`_sigmoid_delta`); otherwise they are not read.
    Writes the changed samples into ``rows[:nr]`` (with batch norm every sample changes) and
    their changes into ``dzp[:nr]``, ``dzm[:nr]``; returns ``nr`` (0: nothing changed).
    """
    N = acol.shape[0]
    dp = wp - w
    dm = wm - w
    if not use_bn:
        nr = 0
        for q in range(ptr[i], ptr[i + 1]):
            n = idx[q]
            xv = val[q]
            if act == 0:
                a = acol[n]
                z = zcol[n]
                vp = _act(a + dp * xv, 0) - z
                vm = _act(a + dm * xv, 0) - z
            else:
                vp = _sigmoid_delta(dp * xv, ecol[n], omzcol[n])
                vm = _sigmoid_delta(dm * xv, ecol[n], omzcol[n])
            if vp != 0.0 or vm != 0.0:
                rows[nr] = n
                dzp[nr] = vp
                dzm[nr] = vm
                nr += 1
        return nr
    changed = False
    for sgn in range(2):
        if i <= Din:
            d = dp if sgn == 0 else dm
            for n in range(N):
                ap[n] = acol[n]
            for q in range(ptr[i], ptr[i + 1]):
                n = idx[q]
                ap[n] = acol[n] + d * val[q]
            _bn_column(ap, g, bb, bn_eps, xb, sb)
        elif i == Din + 1:
            gv = wp if sgn == 0 else wm
            for n in range(N):
                sb[n] = gv * xncol[n] + bb
        else:
            bv = wp if sgn == 0 else wm
            for n in range(N):
                sb[n] = g * xncol[n] + bv
        for n in range(N):
            v = _act(sb[n], act) - zcol[n]
            if sgn == 0:
                dzp[n] = v
            else:
                dzm[n] = v
            if v != 0.0:
                changed = True
    if not changed:
        return 0
    for n in range(N):
        rows[n] = n
    return N


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _moment_eval(n, dz, M, et, wt, wmax):
    """``(num, den)`` for sample ``n`` after hidden unit ``j`` of the last hidden layer moved
    by ``dz`` (all logits move by ``dz * WL[j, :]``).

    ``den = sum_p M[n, p] dz**p`` and ``num = et[n] exp(dz wt[n])`` by Taylor polynomials
    whose degree (2, 4 or 6) keeps the truncation below 2**-60 relative for ``u = |dz|
    max|w|``. Larger ``u`` returns ``num = -1``: the caller recomputes the softmax from the
    logits (:func:`_hidden_unit_eval`) outside its hot loop (a call with array arguments inside
    it made the whole loop 2x slower).
    """
    u = abs(dz) * wmax
    v = dz * wt[n]
    if u <= 1.7e-6:
        s = M[n, 0] + dz * (M[n, 1] + dz * M[n, 2])
        return et[n] * (1.0 + v * (1.0 + v * 0.5)), s
    if u <= 6e-4:
        s = M[n, 0] + dz * (M[n, 1] + dz * (M[n, 2] + dz * (M[n, 3] + dz * M[n, 4])))
        return et[n] * (1.0 + v * (1.0 + v * 0.5 * (1.0 + v * (1.0 / 3.0) * (1.0 + v * 0.25)))), s
    if u <= EXP_SERIES_MAX:
        s = M[n, N_MOMENTS - 1]
        for p in range(N_MOMENTS - 2, -1, -1):
            s = s * dz + M[n, p]
        return et[n] * _exp_small(v), s
    return -1.0, 0.0


# --------------------------------------------------------------------------- forward caches
@njit(cache=True, nogil=True, error_model="numpy")
def _hidden_unit_eval(n, j, dz, WL, AL, E, S, labels, da):
    """``(num, den)`` for sample ``n`` after unit ``j`` of the last hidden layer moved by
    ``dz``, from the logits (the general case of :func:`_moment_eval`)."""
    for k in range(WL.shape[1]):
        da[k] = dz * WL[j, k]
    return _logits_eval(n, da, AL, E, S, labels)


@njit(parallel=True, cache=True, nogil=True, error_model="numpy")
def act_forward_kernel(a, act, out):
    """``out = act(a)`` with the exact scalar formula the gradient kernels use.

    Shape
    -----
    a, out: (R, C).
    """
    R, C = a.shape
    for r in prange(R):
        for c in range(C):
            out[r, c] = _act(a[r, c], act)


@njit(parallel=True, cache=True, nogil=True, error_model="numpy")
def sigmoid_aux_kernel(a, e, omz):
    """``e = exp(-a)`` and ``omz = 1 - sigmoid(a) = e / (1 + e)`` (1 where ``e`` overflows),
    for :func:`_sigmoid_delta`.

    Shape
    -----
    a, e, omz: (R, C).
    """
    R, C = a.shape
    for r in prange(R):
        for c in range(C):
            v = np.exp(-a[r, c])
            e[r, c] = v
            omz[r, c] = v / (1.0 + v) if v < np.inf else 1.0


@njit(parallel=True, cache=True, nogil=True, error_model="numpy")
def bn_forward_kernel(aT, gamma, beta, eps, xnT, sT, mean, var):
    """Training-mode batch norm by column (transposed layout), as :func:`_bn_column`.

    Shape
    -----
    aT, xnT, sT: (H, N); gamma, beta, mean, var: (H,).
    """
    H = aT.shape[0]
    for j in prange(H):
        mu, v = _bn_column(aT[j], gamma[j], beta[j], eps, xnT[j], sT[j])
        mean[j] = mu
        var[j] = v


@njit(parallel=True, cache=True, nogil=True, error_model="numpy")
def softmax_cache_kernel(logits, E, S):
    """``E = exp(logits - rowmax)``, ``S = E.sum(1)`` (summed in class order).

    Shape
    -----
    logits, E: (N, K); S: (N,).
    """
    N, K = logits.shape
    for n in prange(N):
        m = -np.inf
        for k in range(K):
            if logits[n, k] > m:
                m = logits[n, k]
        tot = 0.0
        for k in range(K):
            v = math.exp(logits[n, k] - m)
            E[n, k] = v
            tot += v
        S[n] = tot


@njit(cache=True, nogil=True, error_model="numpy")
def running_stat_kernel(run, batch, momentum, count, out):
    """``count`` training-mode updates ``r = momentum * r + (1 - momentum) * batch`` (the
    book's expression), stopping early once ``r`` no longer changes.

    Shape
    -----
    run, batch, out: (D,).
    """
    one_m = 1.0 - momentum
    for d in range(run.shape[0]):
        r = run[d]
        v = batch[d]
        for _ in range(count):
            r2 = momentum * r + one_m * v
            if r2 == r:
                break
            r = r2
        out[d] = r


# --------------------------------------------------------------------------- FC layers
@njit(cache=True, nogil=True, error_model="numpy")
def _output_column(k, ptr, idx, val, W, b, AL, E, S, labels, h, ce_eps, gW, gb):
    """Gradients of ``W[:, k]`` and ``b[k]`` (one work item of :func:`numgrad_fc_output_kernel`)."""
    Din = W.shape[0]
    N = AL.shape[0]
    for i in range(Din + 1):
        w = W[i, k] if i < Din else b[k]
        dp = (w + h) - w
        dm = (w - h) - w
        R = 1.0
        L = 0.0
        for q in range(ptr[i], ptr[i + 1]):
            n = idx[q]
            xv = val[q]
            num_p, s_p = _single_logit_eval(n, k, dp * xv, AL, E, S, labels)
            num_m, s_m = _single_logit_eval(n, k, dm * xv, AL, E, S, labels)
            R *= _ratio(num_p, s_p, num_m, s_m, ce_eps)
            if R > _BIG or R < _SMALL:
                L += math.log(R)
                R = 1.0
        L += math.log(R)
        g = L / N / (2.0 * h)
        if i < Din:
            gW[i, k] = g
        else:
            gb[k] = g


@njit(parallel=True, cache=True, nogil=True, error_model="numpy")
def numgrad_fc_output_kernel(ptr, idx, val, W, b, AL, E, S, labels, h, ce_eps, gW, gb):
    """Central differences for the output Affine layer (``W_L``, ``b_L``).

    Perturbing ``W[i, k]`` moves logit ``k`` of the samples with ``z[n, i] != 0`` by
    ``((w + h) - w) * z[n, i]``; the new softmax denominator is ``S + e_k * expm1(u)``.

    Parameters
    ----------
    ptr, idx, val : ndarray
        The layer input ``z`` (N, Din) with a column of ones appended, by column:
        nonzeros of column ``i`` are ``val[ptr[i]:ptr[i+1]]`` at rows ``idx[...]``.
    W, b : ndarray
        Weights (Din, K) and bias (K,).
    AL, E, S : ndarray
        Logits (N, K), ``exp(logits - rowmax)`` and its row sums (N,).
    labels : ndarray of int64
        (N,).
    h, ce_eps : float
        1e-4 and the loss' 1e-7.
    gW, gb : ndarray
        Output gradients, shaped like ``W`` and ``b``.
    """
    for k in prange(W.shape[1]):
        _output_column(k, ptr, idx, val, W, b, AL, E, S, labels, h, ce_eps, gW, gb)


@njit(cache=True, nogil=True, error_model="numpy")
def _last_hidden_column(
    j, ptr, idx, val, W, b, aT, zT, eT, omzT, act, use_bn, gamma, beta, xnT, bn_eps,
    WL, AL, E, S, labels, h, ce_eps, gW, gb, ggamma, gbeta,
):
    """One hidden unit ``j`` of :func:`numgrad_fc_last_hidden_kernel`."""
    Din = W.shape[0]
    N = aT.shape[1]
    K = WL.shape[1]
    nparam = Din + 3 if use_bn else Din + 1
    two_h = 2.0 * h
    M = np.zeros((N, N_MOMENTS))
    et = np.empty(N)
    wt = np.empty(N)
    wmax = 0.0
    for k in range(K):
        if abs(WL[j, k]) > wmax:
            wmax = abs(WL[j, k])
    for n in range(N):
        t = labels[n]
        et[n] = E[n, t]
        wt[n] = WL[j, t]
        for k in range(K):
            term = E[n, k]
            wk = WL[j, k]
            for p in range(N_MOMENTS):
                M[n, p] += term
                term = term * wk / (p + 1)
    da = np.empty(K)
    ap = np.empty(N)
    sb = np.empty(N)
    xb = np.empty(N)
    rows = np.empty(N, dtype=np.int64)
    dzp = np.empty(N)
    dzm = np.empty(N)
    slow = np.empty(N, dtype=np.int64)
    acol = aT[j]
    zcol = zT[j]
    ecol = eT[j]
    omzcol = omzT[j]
    xncol = xnT[j]
    g = gamma[j]
    bb = beta[j]
    for i in range(nparam):
        w = _param_value(i, Din, j, W, b, gamma, beta)
        nr = _column_deltas(
            i, Din, w, w + h, w - h, ptr, idx, val, acol, zcol, ecol, omzcol, act, use_bn, g,
            bb, xncol, bn_eps, ap, sb, xb, rows, dzp, dzm,
        )
        # exp(l+ - l-) of sample n is (num_m/s_m + eps) / (num_p/s_p + eps): multiply the
        # numerators and denominators of those ratios separately, divide once per parameter
        Pn = 1.0
        Pd = 1.0
        L = 0.0
        nslow = 0
        for r in range(nr):
            n = rows[r]
            num_p, s_p = _moment_eval(n, dzp[r], M, et, wt, wmax)
            num_m, s_m = _moment_eval(n, dzm[r], M, et, wt, wmax)
            if num_p < 0.0 or num_m < 0.0:
                slow[nslow] = r
                nslow += 1
                continue
            Pn *= (num_m + ce_eps * s_m) * s_p
            Pd *= (num_p + ce_eps * s_p) * s_m
            if Pn > _BIG or Pn < _SMALL or Pd > _BIG or Pd < _SMALL:
                L += math.log(Pn / Pd)
                Pn = 1.0
                Pd = 1.0
        for qs in range(nslow):
            r = slow[qs]
            num_p, s_p = _hidden_unit_eval(rows[r], j, dzp[r], WL, AL, E, S, labels, da)
            num_m, s_m = _hidden_unit_eval(rows[r], j, dzm[r], WL, AL, E, S, labels, da)
            Pn *= (num_m + ce_eps * s_m) * s_p
            Pd *= (num_p + ce_eps * s_p) * s_m
            if Pn > _BIG or Pn < _SMALL or Pd > _BIG or Pd < _SMALL:
                L += math.log(Pn / Pd)
                Pn = 1.0
                Pd = 1.0
        L += math.log(Pn / Pd)
        _store(i, Din, j, L / N / two_h, gW, gb, ggamma, gbeta)


@njit(parallel=True, cache=True, nogil=True, error_model="numpy")
def numgrad_fc_last_hidden_kernel(
    ptr, idx, val, W, b, aT, zT, eT, omzT, act, use_bn, gamma, beta, xnT, bn_eps,
    WL, AL, E, S, labels, h, ce_eps, gW, gb, ggamma, gbeta,
):
    """Central differences for the last hidden layer (``W``, ``b``, and ``gamma``, ``beta`` of
    its batch norm), parallel over its units ``j``.

    A perturbation changes ``z[:, j]`` (only some samples without batch norm); each changed
    sample's logits move by ``dz * WL[j, :]``, evaluated through the softmax moments of unit
    ``j`` (see the module docstring).

    Parameters
    ----------
    ptr, idx, val : ndarray
        The layer input by column, with the bias' column of ones (see
        :func:`numgrad_fc_output_kernel`).
    W, b : ndarray
        (Din, H), (H,).
    aT, zT : ndarray
        Pre-activation (batch-norm input) and activation, transposed: (H, N).
    eT, omzT : ndarray
        ``exp(-aT)`` and ``1 - zT`` for a sigmoid layer without batch norm
        (:func:`sigmoid_aux_kernel`), else (H, 0).
    act : int
        :data:`ACT_RELU` or :data:`ACT_SIGMOID`.
    use_bn : bool
        Batch norm (training mode) between the Affine and the activation.
    gamma, beta : ndarray
        (H,); ignored without batch norm.
    xnT : ndarray
        Normalized ``aT`` (H, N) with batch norm, else (H, 0).
    bn_eps : float
    WL, AL, E, S, labels : ndarray
        Output weights (H, K), logits (N, K), ``exp(logits - rowmax)``, row sums, labels.
    h, ce_eps : float
    gW, gb, ggamma, gbeta : ndarray
        Outputs (``ggamma``/``gbeta`` untouched without batch norm).
    """
    for j in prange(W.shape[1]):
        _last_hidden_column(
            j, ptr, idx, val, W, b, aT, zT, eT, omzT, act, use_bn, gamma, beta, xnT, bn_eps,
            WL, AL, E, S, labels, h, ce_eps, gW, gb, ggamma, gbeta,
        )


# --------------------------------------------------------------------------- last hidden, no BN
# Sample-outer order: for each sample n the quantities of unit j (a, z, the softmax moments, the
# sigmoid's Taylor coefficients) are fixed, so the inner loop over the sample's nonzero inputs
# is straight-line arithmetic; the polynomial degrees are chosen once per sample from a bound on
# the step ``|d| <= max_i |(w_i +- h) - w_i| * max|x[n]|``.
@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _poly_den(mom, deg, dz):
    """``sum_p mom[p] dz**p`` for ``p <= deg`` (2, 4 or 6)."""
    if deg == 2:
        return mom[0] + dz * (mom[1] + dz * mom[2])
    if deg == 4:
        return mom[0] + dz * (mom[1] + dz * (mom[2] + dz * (mom[3] + dz * mom[4])))
    return mom[0] + dz * (
        mom[1] + dz * (mom[2] + dz * (mom[3] + dz * (mom[4] + dz * (mom[5] + dz * mom[6]))))
    )


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _poly_exp(deg, v):
    """``exp(v)`` by its Taylor polynomial of degree ``deg`` (2, 4 or 6)."""
    if deg == 2:
        return 1.0 + v * (1.0 + v * 0.5)
    if deg == 4:
        return 1.0 + v * (1.0 + v * 0.5 * (1.0 + v * (1.0 / 3.0) * (1.0 + v * 0.25)))
    return _exp_small(v)


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _poly_sig(cs, deg, d):
    """``sum_{k=1..deg} cs[k] d**k`` (deg 4 or 6)."""
    if deg == 4:
        return d * (cs[1] + d * (cs[2] + d * (cs[3] + d * cs[4])))
    return d * (cs[1] + d * (cs[2] + d * (cs[3] + d * (cs[4] + d * (cs[5] + d * cs[6])))))


@njit(cache=True, nogil=True, error_model="numpy")
def _sample_direct(
    n, j, lo, hi, rcol, rval, dP, dM, a, z, e, omz, act, c, WL, AL, E, S, labels, ce_eps, da,
    Pn, Pd, L,
):
    """Sample ``n``'s factors for every parameter of column ``j`` of the last hidden layer,
    the general way (any step size; ReLU units that switch; softmax from the logits)."""
    for q in range(lo, hi):
        i = rcol[q]
        xv = rval[q]
        if act == 0:
            vp = _act(a + dP[i] * xv, 0) - z
            vm = _act(a + dM[i] * xv, 0) - z
        else:
            vp = _sigmoid_delta(dP[i] * xv, e, omz)
            vm = _sigmoid_delta(dM[i] * xv, e, omz)
        if vp == 0.0 and vm == 0.0:
            continue
        num_p, s_p = _hidden_unit_eval(n, j, vp, WL, AL, E, S, labels, da)
        num_m, s_m = _hidden_unit_eval(n, j, vm, WL, AL, E, S, labels, da)
        Pn[i] *= (num_m + ce_eps * s_m) * s_p * c
        Pd[i] *= (num_p + ce_eps * s_p) * s_m * c
        if Pn[i] > _BIG or Pn[i] < _SMALL or Pd[i] > _BIG or Pd[i] < _SMALL:
            L[i] += math.log(Pn[i] / Pd[i])
            Pn[i] = 1.0
            Pd[i] = 1.0


@njit(cache=True, nogil=True, error_model="numpy")
def _last_hidden_column_sparse(
    j, rptr, rcol, rval, xmax, W, b, aT, zT, eT, omzT, act, WL, AL, E, S, labels, h, ce_eps,
    gW, gb,
):
    """One hidden unit ``j`` of :func:`numgrad_fc_last_hidden_sparse_kernel`."""
    Din = W.shape[0]
    N = aT.shape[1]
    K = WL.shape[1]
    npar = Din + 1
    dP = np.empty(npar)
    dM = np.empty(npar)
    dmax = 0.0
    for i in range(npar):
        w = W[i, j] if i < Din else b[j]
        dP[i] = (w + h) - w
        dM[i] = (w - h) - w
        dmax = max(dmax, abs(dP[i]), abs(dM[i]))
    wmax = 0.0
    for k in range(K):
        wmax = max(wmax, abs(WL[j, k]))
    Pn = np.ones(npar)
    Pd = np.ones(npar)
    L = np.zeros(npar)
    mom = np.empty(N_MOMENTS)
    cs = np.zeros(7)
    sdeg = 0
    da = np.empty(K)
    for n in range(N):
        a = aT[j, n]
        z = zT[j, n]
        e = 0.0
        omz = 0.0
        if act != 0:
            e = eT[j, n]
            omz = omzT[j, n]
        step = dmax * xmax[n]  # bound on |perturbation of a[n, j]|
        lo = rptr[n]
        hi = rptr[n + 1]
        t = labels[n]
        et = E[n, t]
        wt = WL[j, t]
        c = 1.0 / ((et + ce_eps * S[n]) * S[n])  # the unperturbed factor: keeps products ~1
        fast = True
        if act == 0:
            if a <= -step:
                continue  # stays inactive for every parameter: no change
            fast = a > 2.0 * step
        else:
            sdeg = 4 if step <= 4.8e-4 else (6 if step <= 6e-3 else 0)
            fast = sdeg > 0
            if fast:  # sigma(a + d) - sigma(a) = sum_k cs[k] d**k, cs[k] = sigma^(k)(a) / k!
                uu = z * omz
                tz = omz - z  # 1 - 2 z
                cs[1] = uu
                cs[2] = uu * tz / 2.0
                cs[3] = uu * (1.0 - 6.0 * uu) / 6.0
                cs[4] = uu * tz * (1.0 - 12.0 * uu) / 24.0
                cs[5] = uu * (1.0 - 30.0 * uu + 120.0 * uu * uu) / 120.0
                cs[6] = uu * tz * (1.0 - 60.0 * uu + 360.0 * uu * uu) / 720.0
        u = step * wmax
        deg = 2 if u <= 1.7e-6 else (4 if u <= 6e-4 else (6 if u <= EXP_SERIES_MAX else 0))
        if not fast or deg == 0:
            _sample_direct(
                n, j, lo, hi, rcol, rval, dP, dM, a, z, e, omz, act, c, WL, AL, E, S, labels,
                ce_eps, da, Pn, Pd, L,
            )
        else:
            for p in range(deg + 1):
                mom[p] = 0.0
            for k in range(K):
                term = E[n, k]
                wk = WL[j, k]
                for p in range(deg + 1):
                    mom[p] += term
                    term = term * wk / (p + 1)
            for q in range(lo, hi):
                i = rcol[q]
                xv = rval[q]
                if act == 0:
                    zp = (a + dP[i] * xv) - a
                    zm = (a + dM[i] * xv) - a
                else:
                    zp = _poly_sig(cs, sdeg, dP[i] * xv)
                    zm = _poly_sig(cs, sdeg, dM[i] * xv)
                s_p = _poly_den(mom, deg, zp)
                s_m = _poly_den(mom, deg, zm)
                num_p = et * _poly_exp(deg, zp * wt)
                num_m = et * _poly_exp(deg, zm * wt)
                Pn[i] *= (num_m + ce_eps * s_m) * s_p * c
                Pd[i] *= (num_p + ce_eps * s_p) * s_m * c
        if n % 16 == 15:
            for i in range(npar):
                if Pn[i] > _BIG or Pn[i] < _SMALL or Pd[i] > _BIG or Pd[i] < _SMALL:
                    L[i] += math.log(Pn[i] / Pd[i])
                    Pn[i] = 1.0
                    Pd[i] = 1.0
    for i in range(npar):
        g = (L[i] + math.log(Pn[i] / Pd[i])) / N / (2.0 * h)
        if i < Din:
            gW[i, j] = g
        else:
            gb[j] = g


@njit(parallel=True, cache=True, nogil=True, error_model="numpy")
def numgrad_fc_last_hidden_sparse_kernel(
    rptr, rcol, rval, xmax, W, b, aT, zT, eT, omzT, act, WL, AL, E, S, labels, h, ce_eps,
    gW, gb,
):
    """Central differences of ``W`` and ``b`` of the last hidden layer without batch norm,
    parallel over its units ``j`` (the fast version of :func:`numgrad_fc_last_hidden_kernel`).

    For each sample, the changes of ``z[n, j]`` are evaluated by the sigmoid's Taylor
    polynomial in the step (coefficients ``sigma^(k)(a) / k!`` written in ``u = z (1 - z)``,
    degree 4 for steps up to 4.8e-4, 6 up to 6e-3: truncation below 1e-19) or exactly for a
    ReLU that stays active (a ReLU that stays inactive for every step is skipped, one that may
    switch goes the general way, as do larger steps). The new softmax denominators use the
    moments as in :func:`_moment_eval`. Each sample's factor is scaled by its unperturbed value,
    so the products stay near 1.

    Parameters
    ----------
    rptr, rcol, rval : ndarray
        The layer input with a column of ones appended, by sample (CSR): the nonzeros of
        sample ``n`` are ``rval[rptr[n]:rptr[n+1]]`` at inputs ``rcol[...]``.
    xmax : ndarray
        ``max |input[n, :]|`` per sample (at least 1, the bias' input).
    W, b, aT, zT, eT, omzT, act, WL, AL, E, S, labels, h, ce_eps, gW, gb
        As for :func:`numgrad_fc_last_hidden_kernel` (``omzT``/``eT`` are read for sigmoid).
    """
    for j in prange(W.shape[1]):
        _last_hidden_column_sparse(
            j, rptr, rcol, rval, xmax, W, b, aT, zT, eT, omzT, act, WL, AL, E, S, labels, h,
            ce_eps, gW, gb,
        )


@njit(cache=True, nogil=True, error_model="numpy")
def _tail(
    j, dz, rows, nr, act, use_bn, tdims, tW, tw_off, tA, tZ, ta_off, tG, tB, tg_off, bn_eps,
    WL, AL, E, S, labels, dA, dZ, col, xb, sb, da, num_out, den_out,
):
    """Propagate a change ``dz[:nr]`` of unit ``j`` of a hidden layer (samples ``rows[:nr]``)
    through the later hidden layers (flat-packed ``tW``, ``tA``, ``tZ``, ``tG``, ``tB``) and
    the output layer ``WL``; write each sample's ``(num, den)`` of its label's probability.

    With batch norm ``rows`` is every sample (``rows[r] == r``).
    """
    N = AL.shape[0]
    K = AL.shape[1]
    nt = tdims.shape[0] - 1
    H1 = tdims[1]
    base = tw_off[0] + j * H1
    for r in range(nr):
        d = dz[r]
        for m in range(H1):
            dA[r, m] = d * tW[base + m]
    for k in range(nt):
        Hk = tdims[k + 1]
        aoff = ta_off[k]
        if use_bn:
            goff = tg_off[k]
            for m in range(Hk):
                for n in range(N):
                    col[n] = tA[aoff + n * Hk + m] + dA[n, m]
                _bn_column(col, tG[goff + m], tB[goff + m], bn_eps, xb, sb)
                for n in range(N):
                    dZ[n, m] = _act(sb[n], act) - tZ[aoff + n * Hk + m]
        else:
            for r in range(nr):
                rb = aoff + rows[r] * Hk
                for m in range(Hk):
                    dZ[r, m] = _act(tA[rb + m] + dA[r, m], act) - tZ[rb + m]
        if k < nt - 1:
            Hn = tdims[k + 2]
            woff = tw_off[k + 1]
            for r in range(nr):
                for q in range(Hn):
                    dA[r, q] = 0.0
                for m in range(Hk):
                    v = dZ[r, m]
                    if v != 0.0:
                        wb = woff + m * Hn
                        for q in range(Hn):
                            dA[r, q] += v * tW[wb + q]
        else:
            for r in range(nr):
                for q in range(K):
                    dA[r, q] = 0.0
                for m in range(Hk):
                    v = dZ[r, m]
                    if v != 0.0:
                        for q in range(K):
                            dA[r, q] += v * WL[m, q]
    for r in range(nr):
        for q in range(K):
            da[q] = dA[r, q]
        num_out[r], den_out[r] = _logits_eval(rows[r], da, AL, E, S, labels)


@njit(cache=True, nogil=True, error_model="numpy")
def _hidden_column(
    j, ptr, idx, val, W, b, aT, zT, eT, omzT, act, use_bn, gamma, beta, xnT, bn_eps,
    tdims, tW, tw_off, tA, tZ, ta_off, tG, tB, tg_off,
    WL, AL, E, S, labels, h, ce_eps, gW, gb, ggamma, gbeta,
):
    """One hidden unit ``j`` of :func:`numgrad_fc_hidden_kernel`."""
    Din = W.shape[0]
    N = aT.shape[1]
    K = WL.shape[1]
    nparam = Din + 3 if use_bn else Din + 1
    two_h = 2.0 * h
    hmax = K
    for k in range(1, tdims.shape[0]):
        if tdims[k] > hmax:
            hmax = tdims[k]
    dA = np.empty((N, hmax))
    dZ = np.empty((N, hmax))
    col = np.empty(N)
    xb2 = np.empty(N)
    sb2 = np.empty(N)
    da = np.empty(K)
    num_p = np.empty(N)
    s_p = np.empty(N)
    num_m = np.empty(N)
    s_m = np.empty(N)
    ap = np.empty(N)
    sb = np.empty(N)
    xb = np.empty(N)
    rows = np.empty(N, dtype=np.int64)
    dzp = np.empty(N)
    dzm = np.empty(N)
    acol = aT[j]
    zcol = zT[j]
    ecol = eT[j]
    omzcol = omzT[j]
    xncol = xnT[j]
    g = gamma[j]
    bb = beta[j]
    for i in range(nparam):
        w = _param_value(i, Din, j, W, b, gamma, beta)
        nr = _column_deltas(
            i, Din, w, w + h, w - h, ptr, idx, val, acol, zcol, ecol, omzcol, act, use_bn, g,
            bb, xncol, bn_eps, ap, sb, xb, rows, dzp, dzm,
        )
        L = 0.0
        if nr > 0:
            _tail(
                j, dzp, rows, nr, act, use_bn, tdims, tW, tw_off, tA, tZ, ta_off, tG, tB,
                tg_off, bn_eps, WL, AL, E, S, labels, dA, dZ, col, xb2, sb2, da, num_p, s_p,
            )
            _tail(
                j, dzm, rows, nr, act, use_bn, tdims, tW, tw_off, tA, tZ, ta_off, tG, tB,
                tg_off, bn_eps, WL, AL, E, S, labels, dA, dZ, col, xb2, sb2, da, num_m, s_m,
            )
            R = 1.0
            for r in range(nr):
                R *= _ratio(num_p[r], s_p[r], num_m[r], s_m[r], ce_eps)
                if R > _BIG or R < _SMALL:
                    L += math.log(R)
                    R = 1.0
            L += math.log(R)
        _store(i, Din, j, L / N / two_h, gW, gb, ggamma, gbeta)


@njit(parallel=True, cache=True, nogil=True, error_model="numpy")
def numgrad_fc_hidden_kernel(
    ptr, idx, val, W, b, aT, zT, eT, omzT, act, use_bn, gamma, beta, xnT, bn_eps,
    tdims, tW, tw_off, tA, tZ, ta_off, tG, tB, tg_off,
    WL, AL, E, S, labels, h, ce_eps, gW, gb, ggamma, gbeta,
):
    """Central differences for a hidden layer that is followed by further hidden layers.

    Arguments as :func:`numgrad_fc_last_hidden_kernel`, plus the later hidden layers packed
    flat: ``tdims = [H, H_next, ..., H_last]``; layer ``k`` of the tail has weights
    ``tW[tw_off[k]:...]`` (``tdims[k] x tdims[k+1]``, row-major), cached pre-activation and
    activation ``tA``/``tZ[ta_off[k]:...]`` (``N x tdims[k+1]``) and batch-norm
    ``tG``/``tB[tg_off[k]:...]``. A perturbation's changed samples are pushed through the tail
    (with batch norm: all samples, batch statistics recomputed in every later layer).
    """
    for j in prange(W.shape[1]):
        _hidden_column(
            j, ptr, idx, val, W, b, aT, zT, eT, omzT, act, use_bn, gamma, beta, xnT, bn_eps,
            tdims, tW, tw_off, tA, tZ, ta_off, tG, tB, tg_off,
            WL, AL, E, S, labels, h, ce_eps, gW, gb, ggamma, gbeta,
        )


# --------------------------------------------------------------------------- SimpleConvNet
@njit(cache=True, nogil=True, error_model="numpy")
def _conv_filter(
    f, xpad, W1, b1, stride, A1, P, W2, A2, Z2, W3, AL, E, S, labels, h, ce_eps, gW1, gb1,
):
    """One filter ``f`` of :func:`numgrad_conv_kernel`."""
    N, C = xpad.shape[0], xpad.shape[1]
    FN, _, FH, FW = W1.shape
    OH, OW = A1.shape[2], A1.shape[3]
    PH, PW = P.shape[2], P.shape[3]
    Hd = W2.shape[1]
    K = W3.shape[1]
    nw = C * FH * FW
    two_h = 2.0 * h
    zc = np.empty((OH, OW))
    dP = np.empty(PH * PW)
    qrow = np.empty(PH * PW, dtype=np.int64)
    dA = np.empty(Hd)
    da = np.empty(K)
    num = np.empty(2)
    den = np.empty(2)
    for pi in range(nw + 1):
        c = 0
        ky = 0
        kx = 0
        if pi < nw:
            c = pi // (FH * FW)
            ky = (pi // FW) % FH
            kx = pi % FW
            w = W1[f, c, ky, kx]
        else:
            w = b1[f]
        R = 1.0
        L = 0.0
        for n in range(N):
            for sgn in range(2):
                d = ((w + h) - w) if sgn == 0 else ((w - h) - w)
                for oy in range(OH):
                    for ox in range(OW):
                        xv = 1.0 if pi == nw else xpad[n, c, oy * stride + ky, ox * stride + kx]
                        zc[oy, ox] = _act(A1[n, f, oy, ox] + d * xv, 0)
                nq = 0
                for py in range(PH):
                    for px in range(PW):
                        m = zc[2 * py, 2 * px]
                        if zc[2 * py, 2 * px + 1] > m:
                            m = zc[2 * py, 2 * px + 1]
                        if zc[2 * py + 1, 2 * px] > m:
                            m = zc[2 * py + 1, 2 * px]
                        if zc[2 * py + 1, 2 * px + 1] > m:
                            m = zc[2 * py + 1, 2 * px + 1]
                        v = m - P[n, f, py, px]
                        if v != 0.0:
                            dP[nq] = v
                            qrow[nq] = (f * PH + py) * PW + px
                            nq += 1
                t = labels[n]
                if nq == 0:
                    num[sgn] = E[n, t]
                    den[sgn] = S[n]
                    continue
                for m2 in range(Hd):
                    dA[m2] = 0.0
                for qq in range(nq):
                    v = dP[qq]
                    row = qrow[qq]
                    for m2 in range(Hd):
                        dA[m2] += v * W2[row, m2]
                for q in range(K):
                    da[q] = 0.0
                for m2 in range(Hd):
                    v = _act(A2[n, m2] + dA[m2], 0) - Z2[n, m2]
                    if v != 0.0:
                        for q in range(K):
                            da[q] += v * W3[m2, q]
                num[sgn], den[sgn] = _logits_eval(n, da, AL, E, S, labels)
            R *= _ratio(num[0], den[0], num[1], den[1], ce_eps)
            if R > _BIG or R < _SMALL:
                L += math.log(R)
                R = 1.0
        L += math.log(R)
        if pi < nw:
            gW1[f, c, ky, kx] = L / N / two_h
        else:
            gb1[f] = L / N / two_h


@njit(parallel=True, cache=True, nogil=True, error_model="numpy")
def numgrad_conv_kernel(
    xpad, W1, b1, stride, A1, P, W2, A2, Z2, W3, AL, E, S, labels, h, ce_eps, gW1, gb1,
):
    """Central differences for the convolution of SimpleConvNet (conv -> ReLU -> 2x2 max pool
    stride 2 -> Affine -> ReLU -> Affine), parallel over filters ``f``.

    Perturbing ``W1[f, c, ky, kx]`` moves only output channel ``f`` (by ``d * x`` at each output
    position); it is re-activated and re-pooled, and the pooled change goes through the
    hidden Affine + ReLU and the output Affine of each sample.

    Parameters
    ----------
    xpad : ndarray
        Zero-padded input (N, C, H + 2 pad, W + 2 pad).
    W1, b1 : ndarray
        Filters (FN, C, FH, FW), bias (FN,).
    stride : int
    A1 : ndarray
        Convolution output (N, FN, OH, OW).
    P : ndarray
        Pooled activations (N, FN, PH, PW).
    W2, A2, Z2 : ndarray
        Hidden Affine weights (FN*PH*PW, Hd), its output and ReLU (N, Hd).
    W3, AL, E, S, labels : ndarray
        Output weights (Hd, K), logits, ``exp(logits - rowmax)``, row sums, labels.
    h, ce_eps : float
    gW1, gb1 : ndarray
        Outputs.
    """
    for f in prange(W1.shape[0]):
        _conv_filter(
            f, xpad, W1, b1, stride, A1, P, W2, A2, Z2, W3, AL, E, S, labels, h, ce_eps, gW1, gb1,
        )


# --------------------------------------------------------------------------- generic f(x)
@njit(nogil=True, error_model="numpy")
def numgrad_callable_kernel(f, x, lo, hi, h, h_x, two_h, out):
    """The book's central difference of a Numba-compiled ``f`` for elements ``lo:hi`` of
    ``x``, on a private copy of ``x`` (``x`` itself is not modified).

    ``x + h`` is stored as ``float(x) + h`` and ``x - h`` as ``x - h_x`` with ``h_x`` of x's
    dtype, exactly as the book's loop does under NumPy's promotion rules. Compiled once per
    ``f`` and never cached (Numba cannot cache a function taking a function argument), so it
    is a serial, GIL-free loop; the caller runs one slice per thread.

    Shape
    -----
    x, out: any shape, C-contiguous; ``lo:hi`` indexes their flat view.
    """
    buf = x.copy()
    bf = buf.reshape(-1)
    of = out.reshape(-1)
    for i in range(lo, hi):
        tmp = bf[i]
        bf[i] = np.float64(tmp) + h
        f1 = f(buf)
        bf[i] = tmp - h_x
        f2 = f(buf)
        bf[i] = tmp
        of[i] = (f1 - f2) / two_h
