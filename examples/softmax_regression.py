"""Softmax regression from scratch (d2l chapter 3.6), written against fastnn.

First the numerical lesson of d2l 3.7: a naive softmax overflows for large logits, and the log
of a probability that underflowed to 0 is -inf; fastnn's fused softmax cross-entropy subtracts
the row maximum and, with ``eps=0``, computes the loss directly as ``logsumexp(x) - x[y]``.

Then the model: one affine layer 784 -> 10 trained with minibatch SGD (batch 256, lr 0.1,
10 epochs), reporting loss and train/test accuracy per epoch. Data: the bundled MNIST digits by
default, or Fashion-MNIST from a directory holding its four IDX files (``--data DIR``).

Run::

    python examples/softmax_regression.py
    python examples/softmax_regression.py --data ~/data/fashion-mnist
"""

import argparse

import numpy as np

from fastnn.data import DataLoader
from fastnn.datasets import FASHION_MNIST_CLASSES, load_fashion_mnist, load_mnist
from fastnn.functional import softmax_cross_entropy
from fastnn.nets import SoftmaxRegression
from fastnn.optimizers import SGD


def stability_demo():
    """Why the loss is computed as log-sum-exp (d2l 3.7)."""
    logits = np.array([[800.0, 0.0, -800.0]])
    label = np.array([2])
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        e = np.exp(logits)
        naive = e / e.sum(axis=1, keepdims=True)  # inf / inf = nan
        shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
        stable = shifted / shifted.sum(axis=1, keepdims=True)  # [1, 0, 0]: y[2] underflowed
        log_of_softmax = -np.log(stable[0, label[0]])  # -log(0) = inf
    exact, _ = softmax_cross_entropy(logits, label, eps=0)  # logsumexp - x[y] = 1600
    print("naive softmax:        ", naive[0])
    print("max-subtracted softmax:", stable[0])
    print(f"-log(softmax)[y]:      {log_of_softmax}")
    print(f"log-sum-exp loss:      {float(exact)}")


def load(data_dir):
    if data_dir:
        (x_train, t_train), (x_test, t_test) = load_fashion_mnist(data_dir)
        return x_train, t_train, x_test, t_test, FASHION_MNIST_CLASSES
    (x_train, t_train), (x_test, t_test) = load_mnist()
    return x_train, t_train, x_test, t_test, tuple(str(i) for i in range(10))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", metavar="DIR", default=None,
                        help="directory with the four Fashion-MNIST IDX files")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--train-size", type=int, default=None,
                        help="use only the first N training samples")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    np.random.seed(args.seed)

    stability_demo()

    x_train, t_train, x_test, t_test, classes = load(args.data)
    if args.train_size:
        x_train, t_train = x_train[: args.train_size], t_train[: args.train_size]
    train_iter = DataLoader(x_train, t_train, args.batch_size, prefetch=True)

    num_inputs, num_outputs = x_train.shape[1], len(classes)
    net = SoftmaxRegression(num_inputs, num_outputs, dtype=np.float32)  # W ~ N(0, 0.01), b = 0
    optimizer = SGD(lr=args.lr)

    for epoch in range(args.epochs):
        loss_sum, n = 0.0, 0
        for X, y in train_iter:
            grads = net.gradient(X, y)  # logits -> fused softmax cross-entropy -> backward
            optimizer.update(net.params, grads)
            loss_sum += float(net.last_layer.loss) * len(y)
            n += len(y)
        train_acc = net.accuracy(x_train, t_train)
        test_acc = net.accuracy(x_test, t_test)
        print(f"epoch {epoch + 1}, loss {loss_sum / n:.4f}, train acc {train_acc:.3f}, "
              f"test acc {test_acc:.3f}")

    pred = np.argmax(net.predict(x_test[:6]), axis=1)
    print("predicted:", [classes[i] for i in pred])
    print("true:     ", [classes[i] for i in t_test[:6]])
    return net, float(test_acc)


if __name__ == "__main__":
    main()
