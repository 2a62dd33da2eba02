"""Tests of fastnn.trainer.Trainer: the book's common/trainer.py behaviour plus fastnn extras."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from fastnn import trainer as trainer_mod
from fastnn.trainer import History, Trainer


# --------------------------------------------------------------------------- fakes
class FakeNet:
    """Softmax regression in pure NumPy; records every call. Uses no global RNG."""

    def __init__(self, d=4, c=3):
        rng = np.random.default_rng(0)
        self.params = {"W": 0.1 * rng.standard_normal((d, c)), "b": np.zeros(c)}
        self.grad_batches = []
        self.loss_batches = []
        self.acc_sizes = []

    def predict(self, x):
        return x @ self.params["W"] + self.params["b"]

    def _softmax(self, x):
        a = self.predict(x)
        e = np.exp(a - a.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    def loss(self, x, t):
        self.loss_batches.append(x.copy())
        y = self._softmax(x)
        return -np.mean(np.log(y[np.arange(len(t)), t] + 1e-7))

    def gradient(self, x, t):
        self.grad_batches.append(x.copy())
        y = self._softmax(x)
        y[np.arange(len(t)), t] -= 1
        dy = y / len(t)
        return {"W": x.T @ dy, "b": dy.sum(axis=0)}

    def accuracy(self, x, t):
        self.acc_sizes.append(len(x))
        return float(np.mean(self.predict(x).argmax(axis=1) == t))


class ConstNet:
    """Constant loss and accuracy, so printed lines can be written out literally."""

    def __init__(self):
        self.params = {"W": np.zeros(2)}

    def gradient(self, x, t):
        return {"W": np.ones(2)}

    def loss(self, x, t):
        return 0.5

    def accuracy(self, x, t):
        return 0.25


class PlainSGD:
    def __init__(self, lr=0.1):
        self.lr = lr

    def update(self, params, grads):
        for key in params:
            params[key] -= self.lr * grads[key]


def make_data(n_train=50, n_test=20, d=4, c=3, seed=1):
    rng = np.random.default_rng(seed)
    x_train = rng.standard_normal((n_train, d))
    x_train[:, 0] = np.arange(n_train)  # makes every row identifiable
    t_train = rng.integers(0, c, n_train)
    x_test = rng.standard_normal((n_test, d))
    t_test = rng.integers(0, c, n_test)
    return x_train, t_train, x_test, t_test


def expected_output(tr, final_acc):
    lines = []
    for i, loss in enumerate(tr.train_loss_list):
        lines.append("train loss:" + str(loss))
        if i % tr.iter_per_epoch == 0:
            k = sum(1 for j in range(i + 1) if j % tr.iter_per_epoch == 0)
            lines.append(
                "=== epoch:" + str(k) + ", train acc:" + str(tr.train_acc_list[k - 1])
                + ", test acc:" + str(tr.test_acc_list[k - 1]) + " ==="
            )
    lines.append("=============== Final Test Accuracy ===============")
    lines.append("test acc:" + str(final_acc))
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- book behaviour
def test_printed_lines_literal(capsys):
    x = np.zeros((4, 2))
    t = np.zeros(4, dtype=int)
    tr = Trainer(ConstNet(), x, t, x, t, epochs=2, mini_batch_size=2,
                 optimizer=PlainSGD(), progress=False)
    tr.train()
    out, err = capsys.readouterr()
    assert out == (
        "train loss:0.5\n"
        "=== epoch:1, train acc:0.25, test acc:0.25 ===\n"
        "train loss:0.5\n"
        "train loss:0.5\n"
        "=== epoch:2, train acc:0.25, test acc:0.25 ===\n"
        "train loss:0.5\n"
        "=============== Final Test Accuracy ===============\n"
        "test acc:0.25\n"
    )
    assert err == ""


def test_printed_lines_match_book_format(capsys):
    x_train, t_train, x_test, t_test = make_data()
    net = FakeNet()
    np.random.seed(3)
    tr = Trainer(net, x_train, t_train, x_test, t_test, epochs=3, mini_batch_size=10,
                 optimizer=PlainSGD(0.05), progress=False)
    tr.train()
    out, err = capsys.readouterr()
    final_acc = net.accuracy(x_test, t_test)
    assert out == expected_output(tr, final_acc)
    assert err == ""


def test_attributes_and_counts():
    x_train, t_train, x_test, t_test = make_data(n_train=50)
    net = FakeNet()
    tr = Trainer(net, x_train, t_train, x_test, t_test, epochs=3, mini_batch_size=10,
                 optimizer=PlainSGD(), verbose=False)
    assert tr.network is net and tr.x_train is x_train and tr.t_test is t_test
    assert tr.verbose is False and tr.epochs == 3 and tr.batch_size == 10
    assert tr.evaluate_sample_num_per_epoch is None
    assert tr.train_size == 50
    assert tr.iter_per_epoch == 5.0 and isinstance(tr.iter_per_epoch, float)
    assert tr.max_iter == 15
    assert (tr.current_iter, tr.current_epoch) == (0, 0)
    assert tr.train_loss_list == [] and tr.train_acc_list == [] and tr.test_acc_list == []
    tr.train()
    assert tr.current_iter == 15 and tr.current_epoch == 3
    assert len(net.grad_batches) == 15 and len(net.loss_batches) == 15
    assert all(b.shape == (10, 4) for b in net.grad_batches)
    assert len(tr.train_loss_list) == 15
    assert len(tr.train_acc_list) == 3 and len(tr.test_acc_list) == 3
    # per-epoch evaluations on the full sets, then the final one on the test set
    assert net.acc_sizes == [50, 20] * 3 + [20]


@pytest.mark.parametrize(
    "n_train,batch,epochs,max_iter,n_evals",
    [
        (50, 10, 3, 15, 3),
        (25, 10, 4, 10, 2),  # iter_per_epoch 2.5: boundaries only at 0 and 5 (book quirk)
        (5, 10, 3, 3, 3),  # train_size < batch: iter_per_epoch = 1
        (30, 10, 0.5, 1, 1),
    ],
)
def test_iteration_and_epoch_counts(n_train, batch, epochs, max_iter, n_evals):
    x_train, t_train, x_test, t_test = make_data(n_train=n_train)
    tr = Trainer(FakeNet(), x_train, t_train, x_test, t_test, epochs=epochs,
                 mini_batch_size=batch, optimizer=PlainSGD(), verbose=False)
    assert tr.iter_per_epoch == max(n_train / batch, 1)
    assert tr.max_iter == max_iter
    tr.train()
    assert len(tr.train_loss_list) == max_iter
    assert len(tr.train_acc_list) == n_evals == len(tr.test_acc_list)
    assert tr.current_epoch == n_evals


def test_batches_follow_global_rng():
    x_train, t_train, x_test, t_test = make_data(n_train=40)
    net = FakeNet()
    np.random.seed(123)
    tr = Trainer(net, x_train, t_train, x_test, t_test, epochs=2, mini_batch_size=8,
                 optimizer=PlainSGD(), verbose=False)
    tr.train()
    np.random.seed(123)
    masks = [np.random.choice(40, 8) for _ in range(tr.max_iter)]
    assert len(net.grad_batches) == len(masks) == 10
    for got, mask in zip(net.grad_batches, masks):
        np.testing.assert_array_equal(got, x_train[mask])
    # the loss is computed on the same batch, after the update
    for got, mask in zip(net.loss_batches, masks):
        np.testing.assert_array_equal(got, x_train[mask])


def test_update_order_gradient_then_update_then_loss():
    x_train, t_train, x_test, t_test = make_data(n_train=20)
    net = FakeNet()
    w0 = {k: v.copy() for k, v in net.params.items()}
    np.random.seed(7)
    tr = Trainer(net, x_train, t_train, x_test, t_test, epochs=1, mini_batch_size=20,
                 optimizer=PlainSGD(0.5), verbose=False)
    tr.train_step()
    np.random.seed(7)
    mask = np.random.choice(20, 20)
    ref = FakeNet()
    ref.params = {k: v.copy() for k, v in w0.items()}
    g = ref.gradient(x_train[mask], t_train[mask])
    for k in ref.params:
        ref.params[k] -= 0.5 * g[k]
        np.testing.assert_allclose(net.params[k], ref.params[k], rtol=1e-12)
    assert tr.train_loss_list[0] == pytest.approx(ref.loss(x_train[mask], t_train[mask]))


def test_reproducible_under_seed():
    x_train, t_train, x_test, t_test = make_data(n_train=30)

    def run():
        net = FakeNet()
        np.random.seed(42)
        tr = Trainer(net, x_train, t_train, x_test, t_test, epochs=3, mini_batch_size=7,
                     optimizer="SGD", optimizer_param={"lr": 0.1}, verbose=False)
        tr.train()
        return tr, net

    (a, na), (b, nb) = run(), run()
    assert a.train_loss_list == b.train_loss_list
    assert a.train_acc_list == b.train_acc_list and a.test_acc_list == b.test_acc_list
    for k in na.params:
        np.testing.assert_array_equal(na.params[k], nb.params[k])
    # a different seed gives different batches
    net = FakeNet()
    np.random.seed(43)
    c = Trainer(net, x_train, t_train, x_test, t_test, epochs=3, mini_batch_size=7,
                optimizer="SGD", optimizer_param={"lr": 0.1}, verbose=False)
    c.train()
    assert c.train_loss_list != a.train_loss_list


def test_evaluate_sample_num_per_epoch(capsys):
    x_train, t_train, x_test, t_test = make_data(n_train=50, n_test=20)
    net = FakeNet()
    tr = Trainer(net, x_train, t_train, x_test, t_test, epochs=2, mini_batch_size=10,
                 optimizer=PlainSGD(), evaluate_sample_num_per_epoch=7, progress=False)
    tr.train()
    # two epochs on the first 7 samples, then the final accuracy on the whole test set
    assert net.acc_sizes == [7, 7, 7, 7, 20]
    out = capsys.readouterr().out
    assert out.count("=== epoch:") == 2
    assert out.endswith("test acc:" + str(net.accuracy(x_test, t_test)) + "\n")


def test_verbose_false_prints_nothing(capsys):
    x_train, t_train, x_test, t_test = make_data()
    Trainer(FakeNet(), x_train, t_train, x_test, t_test, epochs=1, mini_batch_size=10,
            optimizer=PlainSGD(), verbose=False).train()
    assert capsys.readouterr() == ("", "")


# --------------------------------------------------------------------------- optimizers
@pytest.mark.parametrize(
    "name,cls_name",
    [
        ("SGD", "SGD"), ("sgd", "SGD"), ("Sgd", "SGD"),
        ("Momentum", "Momentum"), ("MOMENTUM", "Momentum"),
        ("nesterov", "Nesterov"), ("AdaGrad", "AdaGrad"), ("adagrad", "AdaGrad"),
        ("RMSprop", "RMSprop"), ("rmsprop", "RMSprop"), ("RMSProp", "RMSprop"),
        ("Adam", "Adam"), ("ADAM", "Adam"),
    ],
)
def test_optimizer_names_case_insensitive(name, cls_name):
    from fastnn import optimizers

    x_train, t_train, x_test, t_test = make_data()
    tr = Trainer(FakeNet(), x_train, t_train, x_test, t_test, optimizer=name,
                 optimizer_param={"lr": 0.123}, verbose=False)
    assert type(tr.optimizer) is getattr(optimizers, cls_name)
    assert tr.optimizer.lr == 0.123


def test_default_optimizer_is_sgd_lr_001():
    from fastnn.optimizers import SGD

    x_train, t_train, x_test, t_test = make_data()
    tr = Trainer(FakeNet(), x_train, t_train, x_test, t_test, verbose=False)
    assert type(tr.optimizer) is SGD and tr.optimizer.lr == 0.01
    assert tr.epochs == 20 and tr.batch_size == 100
    assert tr.iter_per_epoch == 1 and tr.max_iter == 20


def test_optimizer_param_not_mutated():
    x_train, t_train, x_test, t_test = make_data()
    param = {"lr": 0.01, "momentum": 0.8}
    tr = Trainer(FakeNet(), x_train, t_train, x_test, t_test, optimizer="momentum",
                 optimizer_param=param, verbose=False)
    tr.train()
    assert param == {"lr": 0.01, "momentum": 0.8}
    assert tr.optimizer.momentum == 0.8


def test_named_sgd_matches_manual_update():
    x_train, t_train, x_test, t_test = make_data(n_train=20)
    a, b = FakeNet(), FakeNet()
    np.random.seed(0)
    ta = Trainer(a, x_train, t_train, x_test, t_test, epochs=2, mini_batch_size=5,
                 optimizer="sgd", optimizer_param={"lr": 0.2}, verbose=False)
    ta.train()
    np.random.seed(0)
    tb = Trainer(b, x_train, t_train, x_test, t_test, epochs=2, mini_batch_size=5,
                 optimizer=PlainSGD(0.2), verbose=False)
    tb.train()
    for k in a.params:
        np.testing.assert_allclose(a.params[k], b.params[k], rtol=1e-12, atol=1e-15)


def test_optimizer_instance_and_class():
    x_train, t_train, x_test, t_test = make_data()
    opt = PlainSGD(0.3)
    tr = Trainer(FakeNet(), x_train, t_train, x_test, t_test, optimizer=opt, verbose=False)
    assert tr.optimizer is opt
    tr = Trainer(FakeNet(), x_train, t_train, x_test, t_test, optimizer=PlainSGD,
                 optimizer_param={"lr": 0.7}, verbose=False)
    assert isinstance(tr.optimizer, PlainSGD) and tr.optimizer.lr == 0.7


def test_bad_optimizer():
    x_train, t_train, x_test, t_test = make_data()
    with pytest.raises(ValueError, match="Trainer: unknown optimizer 'adamw'"):
        Trainer(FakeNet(), x_train, t_train, x_test, t_test, optimizer="adamw")
    with pytest.raises(TypeError, match="Trainer: optimizer"):
        Trainer(FakeNet(), x_train, t_train, x_test, t_test, optimizer=3)


# --------------------------------------------------------------------------- progress bar
def _run(capsys, **kw):
    x_train, t_train, x_test, t_test = make_data()
    net = FakeNet()
    np.random.seed(5)
    tr = Trainer(net, x_train, t_train, x_test, t_test, epochs=2, mini_batch_size=10,
                 optimizer=PlainSGD(), **kw)
    tr.train()
    out, err = capsys.readouterr()
    return tr, net, out, err


def test_no_progress_bar_when_disabled(capsys):
    tr, net, out, err = _run(capsys, progress=False)
    assert err == ""
    assert out == expected_output(tr, net.accuracy(tr.x_test, tr.t_test))


def test_progress_bar_when_enabled(capsys):
    tr, net, out, err = _run(capsys, progress=True)
    assert "10/10" in err  # tqdm reached max_iter
    # the book's lines are still printed, ungarbled, on stdout
    assert out == expected_output(tr, net.accuracy(tr.x_test, tr.t_test))
    assert tr._bar is None  # closed after train()


def test_progress_default_follows_tty(capsys, monkeypatch):
    # stderr captured by pytest is not a terminal: no bar
    _, _, _, err = _run(capsys)
    assert err == ""
    monkeypatch.setattr(trainer_mod, "_stderr_isatty", lambda: True)
    _, _, out, err = _run(capsys)
    assert "10/10" in err and "train loss:" in out
    _, _, out, err = _run(capsys, verbose=False)
    assert (out, err) == ("", "")


def test_progress_bar_closed_on_error(capsys):
    class Boom(FakeNet):
        def loss(self, x, t):
            raise RuntimeError("boom")

    x_train, t_train, x_test, t_test = make_data()
    tr = Trainer(Boom(), x_train, t_train, x_test, t_test, epochs=1, mini_batch_size=10,
                 optimizer=PlainSGD(), progress=True)
    with pytest.raises(RuntimeError, match="boom"):
        tr.train()
    assert tr._bar is None


# --------------------------------------------------------------------------- history
def test_history_lists_are_live():
    x_train, t_train, x_test, t_test = make_data()
    tr = Trainer(FakeNet(), x_train, t_train, x_test, t_test, epochs=2, mini_batch_size=10,
                 optimizer=PlainSGD(), verbose=False)
    h = tr.history
    assert isinstance(h, History)
    tr.train()
    assert h.train_loss_list is tr.train_loss_list
    assert h.train_acc_list is tr.train_acc_list and h.test_acc_list is tr.test_acc_list
    assert len(h.train_loss_list) == 10 and len(h.train_acc_list) == 2
    d = h.as_dict()
    assert set(d) == {"train_loss", "train_acc", "test_acc"}
    assert d["train_loss"] == [float(v) for v in tr.train_loss_list]
    assert "iterations=10" in repr(h) and "epochs=2" in repr(h)


def test_history_plot_writes_png(tmp_path):
    pytest.importorskip("matplotlib")
    x_train, t_train, x_test, t_test = make_data()
    tr = Trainer(FakeNet(), x_train, t_train, x_test, t_test, epochs=3, mini_batch_size=10,
                 optimizer=PlainSGD(), verbose=False)
    tr.train()
    path = tmp_path / "history.png"
    fig = tr.history.plot(path, title="fake run")
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 1000
    ax_loss, ax_acc = fig.axes[:2]
    np.testing.assert_allclose(ax_loss.lines[0].get_ydata(), tr.train_loss_list)
    np.testing.assert_allclose(ax_acc.lines[0].get_ydata(), tr.train_acc_list)
    np.testing.assert_allclose(ax_acc.lines[1].get_ydata(), tr.test_acc_list)
    import matplotlib.pyplot as plt

    assert fig.number not in plt.get_fignums()  # closed after saving


def test_history_plot_without_matplotlib(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(ImportError, match=r'pip install "fastnn-numba\[plot\]"'):
        History([1.0], [0.5], [0.5]).plot()
