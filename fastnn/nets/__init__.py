"""The book's networks, built on :mod:`fastnn.layers`.

=====================================  ============================================
book                                   fastnn
=====================================  ============================================
``ch05/two_layer_net.py``              :class:`TwoLayerNet` (``activation='relu'``)
``ch04/two_layer_net.py``              :class:`TwoLayerNet` (``activation='sigmoid'``)
``common/multi_layer_net.py``          :class:`MultiLayerNet`
``common/multi_layer_net_extend.py``   :class:`MultiLayerNetExtend`
``ch07/simple_convnet.py``             :class:`SimpleConvNet`
``ch08/deep_convnet.py``               :class:`DeepConvNet`
d2l 3.2 linear regression              :class:`LinearRegression`
d2l 3.6 softmax regression             :class:`SoftmaxRegression`
=====================================  ============================================

Same constructor arguments, ``params`` keys, layer names and methods as the book. Weights are
drawn from NumPy's global RNG in the book's order, so after ``np.random.seed(s)`` a net starts
from the book's weights. ``params`` and the layers share their arrays, so optimizers update
them in place. Every net also takes ``dtype=np.float32`` (parameters cast after drawing) and has
``save_params`` / ``load_params`` (the book's pickle format).
"""

from .deep_convnet import DeepConvNet
from .multi_layer_net import MultiLayerNet
from .multi_layer_net_extend import MultiLayerNetExtend
from .regression import LinearRegression, SoftmaxRegression
from .simple_convnet import SimpleConvNet
from .two_layer_net import TwoLayerNet

__all__ = [
    "TwoLayerNet",
    "MultiLayerNet",
    "MultiLayerNetExtend",
    "SimpleConvNet",
    "DeepConvNet",
    "LinearRegression",
    "SoftmaxRegression",
]
