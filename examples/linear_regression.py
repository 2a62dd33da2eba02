"""Linear regression from scratch (d2l chapter 3.2), written against fastnn.

The d2l recipe, step by step: generate data from a known linear model, draw shuffled
mini-batches, compute the squared loss and its gradient, update the parameters with SGD, and
check that the learned ``w`` and ``b`` are close to the true ones.

Run::

    python examples/linear_regression.py                 # d2l's settings
    python examples/linear_regression.py --epochs 5 --lr 0.01
"""

import argparse

import numpy as np

from fastnn.data import DataLoader
from fastnn.datasets import synthetic_linear
from fastnn.nets import LinearRegression
from fastnn.optimizers import SGD


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--lr", type=float, default=0.03)
    parser.add_argument("--batch-size", type=int, default=10)
    parser.add_argument("--num-examples", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    np.random.seed(args.seed)  # everything below draws from NumPy's global RNG

    # 1. Data: y = X w + b + noise (d2l's synthetic_data)
    true_w = np.array([2, -3.4])
    true_b = 4.2
    features, labels = synthetic_linear(true_w, true_b, args.num_examples)
    print("features:", features[0], "\nlabel:", labels[0])

    # 2. Mini-batches: shuffled every epoch, the last batch may be partial (d2l's data_iter)
    data_iter = DataLoader(features, labels, args.batch_size)

    # 3. Model: y_hat = X @ W + b, W ~ N(0, 0.01), b = 0; loss 0.5 * (y_hat - y)**2 (mean)
    net = LinearRegression(num_inputs=2)

    # 4. Training: minibatch SGD
    optimizer = SGD(lr=args.lr)
    for epoch in range(args.epochs):
        for X, y in data_iter:
            grads = net.gradient(X, y)  # forward + backward
            optimizer.update(net.params, grads)  # params -= lr * grads
        train_l = net.loss(features, labels)
        print(f"epoch {epoch + 1}, loss {float(train_l):f}")

    w, b = net.params["W"].reshape(-1), net.params["b"][0]
    print(f"learned w: {w}, true w: {true_w}")
    print(f"learned b: {b:.4f}, true b: {true_b}")
    print(f"error in estimating w: {true_w - w}")
    print(f"error in estimating b: {true_b - b}")
    return net


if __name__ == "__main__":
    main()
