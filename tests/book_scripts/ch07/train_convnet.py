# coding: utf-8
# ch07: SimpleConvNet trained by the Trainer with Adam (the book's train_convnet.py; the data
# and the epochs are cut down: pass the number of training images and epochs as arguments).
import sys, os
sys.path.append(os.pardir)
import numpy as np
from dataset.mnist import load_mnist
from simple_convnet import SimpleConvNet
from common.trainer import Trainer

(x_train, t_train), (x_test, t_test) = load_mnist(flatten=False)

n_train = int(sys.argv[1]) if len(sys.argv) > 1 else 300
max_epochs = int(sys.argv[2]) if len(sys.argv) > 2 else 1
x_train, t_train = x_train[:n_train], t_train[:n_train]
x_test, t_test = x_test[:200], t_test[:200]

np.random.seed(0)
network = SimpleConvNet(input_dim=(1,28,28),
                        conv_param = {'filter_num': 30, 'filter_size': 5, 'pad': 0, 'stride': 1},
                        hidden_size=100, output_size=10, weight_init_std=0.01)

trainer = Trainer(network, x_train, t_train, x_test, t_test,
                  epochs=max_epochs, mini_batch_size=100,
                  optimizer='Adam', optimizer_param={'lr': 0.001},
                  evaluate_sample_num_per_epoch=100)
trainer.train()

network.save_params("params.pkl")
print("Saved Network Parameters!")
print("losses:", len(trainer.train_loss_list))
