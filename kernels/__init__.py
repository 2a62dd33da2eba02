"""Numba kernels of fastnn (shipped as ``fastnn.kernels``).

Trusted loops that write into caller-allocated ``out`` arrays: no validation, no allocation
policy. Call them through :mod:`fastnn.functional`. Importing this package configures Numba's
threading layer (see :mod:`fastnn.kernels._jit`).
"""

from . import _jit  # noqa: F401  (threading layer + cache fallback, before any kernel)
from .conv2d import (
    conv2d_backward_bias_kernel,
    conv2d_backward_data_kernel,
    conv2d_backward_weight_kernel,
    conv2d_forward_kernel,
)
from .elementwise import (
    relu_backward_kernel,
    relu_forward_kernel,
    sigmoid_backward_kernel,
    sigmoid_forward_kernel,
)
from .im2col import im2col_backward_kernel, im2col_forward_kernel
from .pool2d import max_pool2d_backward_kernel, max_pool2d_forward_kernel
from .softmax import (
    softmax_cross_entropy_backward_dense_kernel,
    softmax_cross_entropy_backward_kernel,
    softmax_cross_entropy_forward_kernel,
    softmax_forward_kernel,
)

__all__ = [name for name in dir() if name.endswith("_kernel")]
