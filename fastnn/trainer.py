"""Mini-batch training loop: the drop-in replacement for the book's ``common/trainer.py``.

:class:`Trainer` behaves exactly like the book's class: same constructor, same attributes, same
mini-batch draws from NumPy's global RNG (``np.random.choice``), same printed lines, so a seeded
run follows the book's run step for step. fastnn adds

* a tqdm progress bar over iterations (on stderr) when ``progress=True``, or by default when
  ``verbose`` is on and stderr is a terminal; the book's lines are still printed, through
  ``tqdm.write`` so they do not garble the bar;
* :attr:`Trainer.history`, a :class:`History` of the loss and accuracy lists with a
  :meth:`History.plot` method (needs matplotlib: ``pip install "fastnn-numba[plot]"``).
"""

from __future__ import annotations

import os
import sys

import numpy as np

__all__ = ["Trainer", "History", "OPTIMIZER_NAMES"]

#: Optimizer names accepted by :class:`Trainer` (case-insensitive), mapped to the class names
#: of :mod:`fastnn.optimizers`.
OPTIMIZER_NAMES = {
    "sgd": "SGD",
    "momentum": "Momentum",
    "nesterov": "Nesterov",
    "adagrad": "AdaGrad",
    "rmsprop": "RMSprop",
    "adam": "Adam",
}
# The book's dictionary misspells 'rmsprop' as 'rmsprpo'; accept that spelling too.
_OPTIMIZER_ALIASES = {"rmsprpo": "rmsprop"}

_PLOT_INSTALL_HINT = 'pip install "fastnn-numba[plot]"'


def _optimizer_class_dict():
    """The book's ``optimizer_class_dict``, built from :mod:`fastnn.optimizers`."""
    from fastnn import optimizers

    return {key: getattr(optimizers, name) for key, name in OPTIMIZER_NAMES.items()}


def _make_optimizer(optimizer, optimizer_param):
    """Resolve Trainer's ``optimizer`` argument (name, class or instance) to an instance."""
    if isinstance(optimizer, str):
        key = optimizer.lower()
        key = _OPTIMIZER_ALIASES.get(key, key)
        if key not in OPTIMIZER_NAMES:
            raise ValueError(
                f"Trainer: unknown optimizer {optimizer!r}; expected one of "
                f"{', '.join(repr(v) for v in OPTIMIZER_NAMES.values())} (case-insensitive) "
                "or an optimizer instance"
            )
        return _optimizer_class_dict()[key](**optimizer_param)
    if isinstance(optimizer, type):
        if not callable(getattr(optimizer, "update", None)):
            raise TypeError(
                f"Trainer: optimizer class {optimizer.__name__} has no update(params, grads) "
                "method"
            )
        return optimizer(**optimizer_param)
    if callable(getattr(optimizer, "update", None)):
        return optimizer
    raise TypeError(
        "Trainer: optimizer must be a name such as 'SGD' or 'Adam', an optimizer class, or an "
        f"object with an update(params, grads) method; got {type(optimizer).__name__}"
    )


def _stderr_isatty():
    try:
        return bool(sys.stderr.isatty())
    except (AttributeError, ValueError, OSError):
        return False


def _has_display():
    """Whether an interactive matplotlib backend could open a window."""
    if sys.platform.startswith("linux") or "bsd" in sys.platform:
        return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    return True


def _import_pyplot():
    """Import ``matplotlib.pyplot`` lazily, choosing Agg when there is no display."""
    try:
        import matplotlib
    except ImportError as err:
        raise ImportError(
            f"History.plot needs matplotlib, which is not installed: {_PLOT_INSTALL_HINT}"
        ) from err
    if (
        "matplotlib.pyplot" not in sys.modules
        and not os.environ.get("MPLBACKEND")
        and not _has_display()
    ):
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


class History:
    """Loss and accuracy curves recorded by a :class:`Trainer`.

    The lists are the trainer's own list objects (not copies), so a ``History`` taken before or
    during training stays up to date.

    Parameters
    ----------
    train_loss_list : list of float
        Mini-batch loss after each iteration.
    train_acc_list : list of float
        Training accuracy at each epoch boundary.
    test_acc_list : list of float
        Test accuracy at each epoch boundary.

    Attributes
    ----------
    train_loss_list, train_acc_list, test_acc_list : list of float
        As given.
    """

    def __init__(self, train_loss_list, train_acc_list, test_acc_list):
        self.train_loss_list = train_loss_list
        self.train_acc_list = train_acc_list
        self.test_acc_list = test_acc_list

    def __repr__(self):
        return (
            f"History(iterations={len(self.train_loss_list)}, "
            f"epochs={len(self.train_acc_list)})"
        )

    def as_dict(self):
        """Return the three curves as a dict of new lists.

        Returns
        -------
        dict
            Keys ``'train_loss'``, ``'train_acc'``, ``'test_acc'``, values plain Python lists of
            floats.
        """
        return {
            "train_loss": [float(v) for v in self.train_loss_list],
            "train_acc": [float(v) for v in self.train_acc_list],
            "test_acc": [float(v) for v in self.test_acc_list],
        }

    def plot(self, path=None, title=None):
        """Draw the loss per iteration and the train/test accuracy per epoch in one figure.

        The left panel shows the mini-batch loss against the iteration, the right panel the
        train and test accuracy against the epoch (counted from 0, as in the book's plotting
        scripts), with the y axis fixed to ``[0, 1]``.

        Parameters
        ----------
        path : str or os.PathLike, optional
            Save the figure there (format from the extension, e.g. ``.png``) and close it. If
            omitted, the figure stays open so it can be shown (``plt.show()``).
        title : str, optional
            Figure title.

        Returns
        -------
        matplotlib.figure.Figure
            The figure.

        Raises
        ------
        ImportError
            If matplotlib is not installed (``pip install "fastnn-numba[plot]"``).

        Notes
        -----
        matplotlib is imported only here. When no display is available (no ``$DISPLAY`` on
        Linux), ``pyplot`` has not been imported yet and ``$MPLBACKEND`` is unset, the Agg
        backend is selected.
        """
        plt = _import_pyplot()
        fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 4))
        losses = np.asarray([float(v) for v in self.train_loss_list], dtype=np.float64)
        ax_loss.plot(np.arange(losses.size), losses, linewidth=0.8, label="train loss")
        ax_loss.set_xlabel("iterations")
        ax_loss.set_ylabel("loss")
        ax_loss.set_title("mini-batch loss")
        epochs = np.arange(len(self.train_acc_list))
        ax_acc.plot(epochs, [float(v) for v in self.train_acc_list], marker="o", label="train")
        ax_acc.plot(
            np.arange(len(self.test_acc_list)),
            [float(v) for v in self.test_acc_list],
            marker="s",
            label="test",
        )
        ax_acc.set_xlabel("epochs")
        ax_acc.set_ylabel("accuracy")
        ax_acc.set_ylim(0, 1.0)
        ax_acc.set_title("accuracy")
        ax_acc.legend(loc="lower right")
        if title is not None:
            fig.suptitle(title)
        fig.tight_layout()
        if path is not None:
            fig.savefig(os.fspath(path))
            plt.close(fig)
        return fig


class Trainer:
    """Train a network with mini-batch gradient descent, as the book's ``common.trainer``.

    Each iteration draws ``mini_batch_size`` samples with replacement
    (``np.random.choice(train_size, batch_size)``, NumPy's global RNG), computes
    ``network.gradient``, lets the optimizer update ``network.params`` in place, then records
    ``network.loss`` on the same batch. At every epoch boundary
    (``current_iter % iter_per_epoch == 0``, checked before ``current_iter`` is incremented, so
    the first evaluation follows the first update) it records the train and test accuracy.

    Parameters
    ----------
    network : object
        Has ``params`` (dict of arrays), ``gradient(x, t)`` returning a dict with the same keys,
        ``loss(x, t)`` and ``accuracy(x, t)``.
    x_train, t_train, x_test, t_test : numpy.ndarray
        Training and test data; indexed along the first axis.
    epochs : int, default 20
        Number of epochs; the run has ``int(epochs * iter_per_epoch)`` iterations.
    mini_batch_size : int, default 100
        Samples per iteration.
    optimizer : str or type or object, default 'SGD'
        One of ``'SGD'``, ``'Momentum'``, ``'Nesterov'``, ``'AdaGrad'``, ``'RMSprop'``,
        ``'Adam'`` (case-insensitive; classes of :mod:`fastnn.optimizers`), an optimizer class
        (instantiated with ``optimizer_param``), or an object with ``update(params, grads)``
        (used as is; ``optimizer_param`` is then ignored).
    optimizer_param : dict, default {'lr': 0.01}
        Keyword arguments of the optimizer class. Not modified.
    evaluate_sample_num_per_epoch : int, optional
        Evaluate the per-epoch accuracies on only the first this-many training and test
        samples (the final test accuracy always uses the whole test set).
    verbose : bool, default True
        Print the book's lines: ``train loss:...`` after each iteration,
        ``=== epoch:..., train acc:..., test acc:... ===`` at each epoch and the final test
        accuracy.
    progress : bool, optional
        Show a tqdm progress bar over the iterations of :meth:`train` on stderr. ``None``
        (default) shows it when ``verbose`` is on and stderr is a terminal.

    Attributes
    ----------
    network, verbose, x_train, t_train, x_test, t_test, epochs, evaluate_sample_num_per_epoch
        As given.
    batch_size : int
        ``mini_batch_size``.
    optimizer : object
        The optimizer instance.
    train_size : int
        ``x_train.shape[0]``.
    iter_per_epoch : float
        ``max(train_size / mini_batch_size, 1)`` (a float, as in the book).
    max_iter : int
        ``int(epochs * iter_per_epoch)``.
    current_iter, current_epoch : int
        Iterations and epoch boundaries done so far.
    train_loss_list, train_acc_list, test_acc_list : list
        Loss per iteration; train and test accuracy per epoch.
    progress : bool or None
        As given.

    Notes
    -----
    When ``iter_per_epoch`` is not an integer (``train_size`` not a multiple of
    ``mini_batch_size``), the boundary test ``current_iter % iter_per_epoch == 0`` holds only
    at common multiples, so fewer accuracies are recorded than epochs; this is the book's
    behaviour, kept on purpose.

    Examples
    --------
    >>> trainer = Trainer(network, x_train, t_train, x_test, t_test,  # doctest: +SKIP
    ...                   epochs=20, mini_batch_size=100, optimizer='Adam',
    ...                   optimizer_param={'lr': 0.001}, evaluate_sample_num_per_epoch=1000)
    >>> trainer.train()  # doctest: +SKIP
    >>> trainer.history.plot("curves.png")  # doctest: +SKIP
    """

    def __init__(
        self,
        network,
        x_train,
        t_train,
        x_test,
        t_test,
        epochs=20,
        mini_batch_size=100,
        optimizer="SGD",
        optimizer_param={"lr": 0.01},  # noqa: B006 - the book's default; never mutated
        evaluate_sample_num_per_epoch=None,
        verbose=True,
        progress=None,
    ):
        self.network = network
        self.verbose = verbose
        self.x_train = x_train
        self.t_train = t_train
        self.x_test = x_test
        self.t_test = t_test
        self.epochs = epochs
        self.batch_size = mini_batch_size
        self.evaluate_sample_num_per_epoch = evaluate_sample_num_per_epoch
        self.progress = progress

        if optimizer_param is None:
            optimizer_param = {}
        self.optimizer = _make_optimizer(optimizer, optimizer_param)

        self.train_size = x_train.shape[0]
        self.iter_per_epoch = max(self.train_size / mini_batch_size, 1)
        self.max_iter = int(epochs * self.iter_per_epoch)
        self.current_iter = 0
        self.current_epoch = 0

        self.train_loss_list = []
        self.train_acc_list = []
        self.test_acc_list = []

        self._bar = None

    # ------------------------------------------------------------------ output
    def _print(self, line):
        """Print one of the book's lines, through tqdm while a bar is active."""
        if self._bar is not None:
            self._bar.write(line)
        else:
            print(line)

    def _progress_enabled(self):
        if self.progress is None:
            return bool(self.verbose) and _stderr_isatty()
        return bool(self.progress)

    # ------------------------------------------------------------------ training
    def train_step(self):
        """Run one iteration: draw a mini-batch, update the parameters, record the loss.

        At an epoch boundary also records (and, if ``verbose``, prints) the train and test
        accuracy.
        """
        batch_mask = np.random.choice(self.train_size, self.batch_size)
        x_batch = self.x_train[batch_mask]
        t_batch = self.t_train[batch_mask]

        grads = self.network.gradient(x_batch, t_batch)
        self.optimizer.update(self.network.params, grads)

        loss = self.network.loss(x_batch, t_batch)
        self.train_loss_list.append(loss)
        if self.verbose:
            self._print("train loss:" + str(loss))

        if self.current_iter % self.iter_per_epoch == 0:
            self.current_epoch += 1

            x_train_sample, t_train_sample = self.x_train, self.t_train
            x_test_sample, t_test_sample = self.x_test, self.t_test
            if self.evaluate_sample_num_per_epoch is not None:
                t = self.evaluate_sample_num_per_epoch
                x_train_sample, t_train_sample = self.x_train[:t], self.t_train[:t]
                x_test_sample, t_test_sample = self.x_test[:t], self.t_test[:t]

            train_acc = self.network.accuracy(x_train_sample, t_train_sample)
            test_acc = self.network.accuracy(x_test_sample, t_test_sample)
            self.train_acc_list.append(train_acc)
            self.test_acc_list.append(test_acc)

            if self.verbose:
                self._print(
                    "=== epoch:" + str(self.current_epoch) + ", train acc:" + str(train_acc)
                    + ", test acc:" + str(test_acc) + " ==="
                )
            if self._bar is not None:
                self._bar.set_postfix_str(
                    f"epoch {self.current_epoch}, test acc {_fmt(test_acc)}", refresh=False
                )
        self.current_iter += 1
        if self._bar is not None:
            self._bar.update(1)

    def train(self):
        """Run ``max_iter`` iterations, then evaluate on the whole test set.

        If ``verbose``, prints ``=============== Final Test Accuracy ===============`` and
        ``test acc:<accuracy>`` at the end.
        """
        if self._progress_enabled():
            from tqdm.auto import tqdm

            self._bar = tqdm(
                total=self.max_iter, unit="it", file=sys.stderr, dynamic_ncols=True,
                desc="train",
            )
        try:
            for _ in range(self.max_iter):
                self.train_step()
        finally:
            bar, self._bar = self._bar, None
            if bar is not None:
                bar.close()

        test_acc = self.network.accuracy(self.x_test, self.t_test)

        if self.verbose:
            print("=============== Final Test Accuracy ===============")
            print("test acc:" + str(test_acc))

    @property
    def history(self):
        """:class:`History`: the loss and accuracy lists (live), with a ``plot`` method."""
        return History(self.train_loss_list, self.train_acc_list, self.test_acc_list)


def _fmt(value):
    try:
        return f"{float(value):.4f}"
    except (TypeError, ValueError):
        return str(value)
