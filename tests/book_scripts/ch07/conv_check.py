# coding: utf-8
# ch07: the Convolution and Pooling layers against the im2col formulation of the chapter, and
# a reload of the parameters saved by train_convnet.py.
import sys, os
sys.path.append(os.pardir)
import numpy as np
from common.layers import *
from common.util import im2col
from dataset.mnist import load_mnist
from simple_convnet import SimpleConvNet

np.random.seed(0)
x = np.random.rand(2, 3, 7, 7)
W = np.random.randn(4, 3, 3, 3)
b = np.random.randn(4)
conv = Convolution(W, b, stride=1, pad=1)
out = conv.forward(x)

col = im2col(x, 3, 3, stride=1, pad=1)
expected = (np.dot(col, W.reshape(4, -1).T) + b).reshape(2, 7, 7, -1).transpose(0, 3, 1, 2)
print("conv max abs diff:", np.abs(out - expected).max())

pool = Pooling(pool_h=2, pool_w=2, stride=2)
p = pool.forward(out[:, :, :6, :6])
print("pool max abs diff:", np.abs(p - out[:, :, :6, :6].reshape(2, 4, 3, 2, 3, 2).max(axis=(3, 5))).max())

y = softmax(np.array([1.0, 2.0, 3.0]))
print("softmax sum:", y.sum())

network = SimpleConvNet()
network.load_params("params.pkl")
(x_train, t_train), (x_test, t_test) = load_mnist(flatten=False)
print("reloaded test acc:", network.accuracy(x_test[:200], t_test[:200]))
