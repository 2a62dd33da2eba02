# coding: utf-8
# ch04: numerical gradient of a one-layer net (the book's gradient_simplenet.py).
import sys, os
sys.path.append(os.pardir)
import numpy as np
from common.functions import softmax, cross_entropy_error
from common.gradient import numerical_gradient


class simpleNet:
    def __init__(self):
        self.W = np.random.randn(2, 3)

    def predict(self, x):
        return np.dot(x, self.W)

    def loss(self, x, t):
        z = self.predict(x)
        y = softmax(z)
        loss = cross_entropy_error(y, t)
        return loss


np.random.seed(0)
x = np.array([0.6, 0.9])
t = np.array([0, 0, 1])

net = simpleNet()

f = lambda w: net.loss(x, t)
dW = numerical_gradient(f, net.W)

print(dW)
# analytic gradient: outer(x, softmax(x W) - t)
y = softmax(np.dot(x, net.W))
print("max abs error:", np.abs(dW - np.outer(x, y - t)).max())
print("numerical_gradient from:", numerical_gradient.__module__)
