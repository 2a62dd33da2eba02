"""Per-op timings: the NumPy reference (the book's algorithm) versus fastnn (and torch).

One class per case of :data:`fastnn.bench.CASES`. Parameters: implementation
(``reference``, ``fastnn``, plus ``torch`` when PyTorch is installed), dtype, and shape name
(:func:`fastnn.bench.asv_shapes`: the book's MNIST shapes at batch 100, a larger,
ImageNet-like one, and the rest of the case's shape set, e.g. the six DeepConvNet layers). ``setup`` builds the inputs and makes one untimed call (Numba compiles or
loads its cache there), so ``time_op`` measures steady-state calls only.
"""

from fastnn import bench as _bench

_IMPLS = list(_bench.available_implementations())
_DTYPES = ["float32", "float64"]
_SHAPES = list(_bench.ASV_SHAPES)


class _OpBenchmark:
    """Base class: time ``case.<impl>(*case.make(shape, dtype))`` for the case ``key``."""

    key = None
    params = [_IMPLS, _DTYPES, _SHAPES]
    param_names = ["impl", "dtype", "shape"]
    timeout = 600
    # The large shapes take up to seconds per call for the reference; a few samples suffice.
    repeat = (1, 5, 30.0)

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        cls.params = [_IMPLS, _DTYPES, list(_bench.asv_shapes(cls.key))]

    def setup(self, impl, dtype, shape):
        case = _bench.get_case(self.key)
        if impl == "torch" and case.torch_factory is None:
            raise NotImplementedError(f"{case.key}: no torch implementation")  # asv: skipped
        self.fn = case.callable(impl)
        self.args = case.make(shape, dtype)
        self.fn(*self.args)  # warm-up: JIT compilation or cache load, first-touch of memory

    def teardown(self, impl, dtype, shape):
        self.args = None

    def time_op(self, impl, dtype, shape):
        """One call of the whole op (e.g. forward + backward)."""
        self.fn(*self.args)


class Conv2d(_OpBenchmark):
    """conv2d fwd+bwd: forward, data, weight and bias gradients."""

    key = "conv2d"


class Conv2dForward(_OpBenchmark):
    """conv2d forward only (inference)."""

    key = "conv2d_fwd"


class Conv2d1x1(_OpBenchmark):
    """conv2d with 1x1 filters, fwd+bwd (the gemm path's in-place pointwise kernels)."""

    key = "conv2d_1x1"


class Im2col(_OpBenchmark):
    """im2col (patch unfolding)."""

    key = "im2col"


class Col2im(_OpBenchmark):
    """col2im (patch folding, overlapping patches summed)."""

    key = "col2im"


class MaxPool2d(_OpBenchmark):
    """max_pool2d forward (with argmax) + backward."""

    key = "max_pool2d"


class SoftmaxCrossEntropy(_OpBenchmark):
    """Softmax cross-entropy forward + backward, integer labels."""

    key = "softmax_ce"


class SoftmaxCrossEntropyOneHot(_OpBenchmark):
    """Softmax cross-entropy forward + backward, one-hot targets."""

    key = "softmax_ce_onehot"


class Relu(_OpBenchmark):
    """ReLU forward + backward (backward in place, as the book)."""

    key = "relu"


class Sigmoid(_OpBenchmark):
    """Sigmoid forward + backward."""

    key = "sigmoid"


class Dropout(_OpBenchmark):
    """Dropout forward (mask from NumPy's global RNG, as the book) + backward."""

    key = "dropout"


class BatchNorm(_OpBenchmark):
    """BatchNormalization training forward + backward."""

    key = "batchnorm"


class DataLoaderEpoch(_OpBenchmark):
    """One shuffled epoch of mini-batches (``large``: 60,000 x 784, batch 256)."""

    key = "dataloader_epoch"


class SoftmaxRegressionEpoch(_OpBenchmark):
    """One SGD epoch of softmax regression (``large``: 60,000 x 784 -> 10, batch 256)."""

    key = "softmax_regression_epoch"


class ConvMemory:
    """Peak resident memory of conv2d fwd+bwd: the book's im2col buffers versus fastnn.

    asv's ``peakmem`` is the whole process's maximum RSS, inputs and interpreter included;
    compare implementations at equal shape and dtype.
    """

    params = [["reference", "fastnn"], _DTYPES, _SHAPES]
    param_names = ["impl", "dtype", "shape"]
    timeout = 600

    def setup(self, impl, dtype, shape):
        case = _bench.get_case("conv2d")
        self.fn = case.callable(impl)
        self.args = case.make(shape, dtype)
        if impl == "fastnn":
            # compile on a tiny input, so compilation memory does not count and the large
            # buffers are allocated only inside the measured call
            self.fn(*case.make("tiny", dtype))

    def peakmem_conv2d_fwd_bwd(self, impl, dtype, shape):
        """Peak RSS during one conv2d forward + backward."""
        self.fn(*self.args)
