"""Shared fixtures and shape tables for the kernel / functional / layer tests.

The tables below are the single source of geometry for ``test_parity.py``,
``test_gradcheck.py`` and ``test_layers.py``. A test asks for one case by naming the argument
``conv_case`` or ``pool_case``; :func:`pytest_generate_tests` parametrizes it over the whole
table (with readable ids), so every file walks the same shapes without importing this module.

Nothing here is autouse: the fixtures only affect tests that request them.
"""

from __future__ import annotations

from typing import NamedTuple

import numba
import numpy as np
import pytest

import fastnn


class ConvCase(NamedTuple):
    """Geometry of one convolution: x (N, C, H, W), W (FN, C, FH, FW), stride, pad."""

    N: int
    C: int
    H: int
    W: int
    FN: int
    FH: int
    FW: int
    stride: int
    pad: int

    @property
    def x_shape(self):
        return (self.N, self.C, self.H, self.W)

    @property
    def w_shape(self):
        return (self.FN, self.C, self.FH, self.FW)

    @property
    def out_hw(self):
        return (
            (self.H + 2 * self.pad - self.FH) // self.stride + 1,
            (self.W + 2 * self.pad - self.FW) // self.stride + 1,
        )

    @property
    def out_shape(self):
        return (self.N, self.FN) + self.out_hw

    @property
    def id(self):
        return (
            f"x{self.N}x{self.C}x{self.H}x{self.W}-w{self.FN}x{self.FH}x{self.FW}"
            f"-s{self.stride}p{self.pad}"
        )


class PoolCase(NamedTuple):
    """Geometry of one max pooling: x (N, C, H, W), window ph x pw, stride, pad."""

    N: int
    C: int
    H: int
    W: int
    ph: int
    pw: int
    stride: int
    pad: int

    @property
    def x_shape(self):
        return (self.N, self.C, self.H, self.W)

    @property
    def out_hw(self):
        return (
            (self.H + 2 * self.pad - self.ph) // self.stride + 1,
            (self.W + 2 * self.pad - self.pw) // self.stride + 1,
        )

    @property
    def out_shape(self):
        return (self.N, self.C) + self.out_hw

    @property
    def id(self):
        return f"x{self.N}x{self.C}x{self.H}x{self.W}-k{self.ph}x{self.pw}-s{self.stride}p{self.pad}"


#: Convolution geometries: odd sizes, strides 1-3, pads 0-2, non-square filters, batch 1,
#: 1x1 filters, single channel, filter == input, filter larger than the unpadded input,
#: strides that leave trailing rows/columns unused. Kept small: every case is also
#: gradient-checked element by element.
CONV_CASES = [
    ConvCase(2, 3, 5, 5, 4, 3, 3, 1, 0),  # the book's usual 3x3
    ConvCase(2, 3, 5, 5, 4, 3, 3, 1, 1),  # "same" padding
    ConvCase(2, 2, 7, 6, 3, 3, 3, 2, 1),  # odd input, stride 2
    ConvCase(1, 2, 8, 7, 2, 3, 2, 3, 2),  # stride 3, pad 2, non-square filter
    ConvCase(2, 2, 6, 5, 3, 2, 4, 1, 0),  # wide filter
    ConvCase(1, 3, 5, 7, 2, 4, 1, 2, 2),  # tall filter, stride 2, pad 2
    ConvCase(1, 1, 4, 4, 1, 3, 3, 1, 1),  # batch 1, single channel, single filter
    ConvCase(3, 4, 3, 5, 2, 1, 1, 1, 0),  # 1x1 filter
    ConvCase(2, 2, 5, 4, 3, 1, 1, 2, 1),  # 1x1 filter, stride 2, pad 1
    ConvCase(2, 1, 3, 3, 2, 1, 1, 1, 2),  # 1x1 filter, pad 2: all-padding border outputs
    ConvCase(2, 2, 3, 3, 2, 3, 3, 1, 0),  # filter == input: OH = OW = 1
    ConvCase(1, 2, 2, 3, 2, 4, 4, 1, 1),  # filter larger than the unpadded input
    ConvCase(2, 1, 6, 6, 2, 3, 3, 2, 0),  # stride leaves the last row/column unused
    ConvCase(1, 2, 7, 8, 2, 2, 2, 3, 0),  # stride > filter: skipped pixels
    ConvCase(1, 2, 7, 7, 2, 2, 2, 3, 1),  # stride > filter with padding
    ConvCase(2, 2, 4, 5, 5, 3, 3, 1, 2),  # 3x3 pad 2: the 3x3 kernels' data gradient at pad 0
    ConvCase(2, 2, 6, 5, 3, 5, 5, 1, 2),  # 5x5 "same" padding: the 5x5 direct kernels
]

#: Max-pooling geometries (pad < window always): the book's 2x2/2, odd inputs, overlapping
#: windows (stride < window), padding up to window - 1, non-square windows, 1x1 windows.
POOL_CASES = [
    PoolCase(2, 3, 4, 4, 2, 2, 2, 0),  # the book's 2x2 stride 2
    PoolCase(2, 2, 5, 5, 2, 2, 2, 0),  # odd input: last row/column unused
    PoolCase(1, 2, 5, 5, 3, 3, 1, 0),  # overlapping 3x3 stride 1
    PoolCase(2, 2, 6, 5, 3, 3, 2, 1),  # overlapping 3x3 stride 2 pad 1
    PoolCase(1, 1, 5, 7, 2, 3, 1, 1),  # non-square window, stride 1, pad 1
    PoolCase(2, 2, 7, 6, 3, 3, 3, 2),  # pad 2 with a 3x3 window
    PoolCase(1, 3, 4, 4, 1, 1, 1, 0),  # 1x1 window
    PoolCase(3, 1, 3, 3, 3, 3, 1, 0),  # window == input
    PoolCase(1, 2, 3, 4, 2, 2, 1, 1),  # stride 1, pad 1
    PoolCase(2, 1, 6, 6, 4, 4, 2, 3),  # pad 3: edge windows hold a single real row/column
]


def pytest_generate_tests(metafunc):
    """Parametrize ``conv_case`` / ``pool_case`` arguments over the shared tables."""
    if "conv_case" in metafunc.fixturenames:
        metafunc.parametrize("conv_case", CONV_CASES, ids=[c.id for c in CONV_CASES])
    if "pool_case" in metafunc.fixturenames:
        metafunc.parametrize("pool_case", POOL_CASES, ids=[c.id for c in POOL_CASES])


@pytest.fixture
def rng():
    """A fresh, fixed-seed generator per test (tests never touch NumPy's global RNG)."""
    return np.random.default_rng(20240601)


@pytest.fixture
def restore_threads():
    """Yield the maximum thread count; restore the thread setting of the test's start after."""
    before = fastnn.get_num_threads()
    yield numba.config.NUMBA_NUM_THREADS
    fastnn.set_num_threads(before)


@pytest.fixture
def restore_global_rng():
    """Save and restore NumPy's global RNG state around tests that seed it."""
    state = np.random.get_state()
    yield
    np.random.set_state(state)
