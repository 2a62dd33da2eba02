"""Alias of :mod:`fastnn.optimizers` under the book's module name ``common.optimizer``.

``from fastnn.optimizer import Adam`` works like ``from common.optimizer import Adam``; the
classes are the very same objects as in :mod:`fastnn.optimizers`.
"""

from fastnn.optimizers import *  # noqa: F401,F403
from fastnn.optimizers import __all__  # noqa: F401
