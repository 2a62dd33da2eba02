# coding: utf-8
# ch08: DeepConvNet trained by the Trainer (the book's train_deepnet.py, cut down to one
# mini-batch), saving deep_convnet_params.pkl.
import sys, os
sys.path.append(os.pardir)
import numpy as np
from dataset.mnist import load_mnist
from deep_convnet import DeepConvNet
from common.trainer import Trainer

(x_train, t_train), (x_test, t_test) = load_mnist(flatten=False)
x_train, t_train = x_train[:100], t_train[:100]
x_test, t_test = x_test[:100], t_test[:100]

np.random.seed(0)
network = DeepConvNet()
trainer = Trainer(network, x_train, t_train, x_test, t_test,
                  epochs=1, mini_batch_size=100,
                  optimizer='Adam', optimizer_param={'lr':0.001},
                  evaluate_sample_num_per_epoch=100)
trainer.train()

network.save_params("deep_convnet_params.pkl")
print("Saved Network Parameters!")
