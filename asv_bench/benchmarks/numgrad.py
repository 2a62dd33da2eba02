"""Numerical gradients of the book's nets: ``net.numerical_gradient(x, t)`` versus the book's loop.

The cases are those of :mod:`fastnn._numgrad_bench` (``fastnn bench --ops numgrad``): a ch04
training step of TwoLayerNet (batch 100, sigmoid and ReLU), the gradient checks of ch05
(TwoLayerNet, 3 samples), ch06 (MultiLayerNetExtend with batch norm, 1 sample) and ch07
(SimpleConvNet on 1x10x10, 1 sample), and MultiLayerNet with weight decay (batch 10).

``time_fastnn`` times the complete fastnn call. The book's loop would take tens of seconds to
minutes per call, so it is **not** timed to the end: ``track_reference_seconds`` runs the book's
loop (two full loss evaluations per element) over a fixed number of elements of every parameter
array and scales that time by the parameter count. Every loss evaluation is a whole forward pass
of the same cost, so this estimates the full loop's time; compare it with ``time_fastnn``.
"""

from fastnn import _numgrad_bench as _nb


class NumericalGradient:
    """fastnn's numerical gradient, and the book's loop estimated from a sample."""

    params = [list(_nb.KEYS)]
    param_names = ["case"]
    timeout = 600
    repeat = (1, 10, 20.0)

    def setup(self, case):
        self.net, self.x, self.t, self.train_flg = _nb.get_case(case).build()
        self.net.numerical_gradient(self.x, self.t)  # warm-up: compile or load the kernels

    def time_fastnn(self, case):
        """One complete ``net.numerical_gradient(x, t)``."""
        self.net.numerical_gradient(self.x, self.t)

    def track_reference_seconds(self, case):
        """Estimated seconds of the book's loop for the same gradient (sampled and scaled)."""
        return _nb.estimate_reference_seconds(self.net, self.x, self.t, self.train_flg)

    track_reference_seconds.unit = "seconds"
