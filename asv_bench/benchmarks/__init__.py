"""asv benchmarks of fastnn.

The cases, input shapes and the NumPy reference / fastnn / torch callables all come from
:mod:`fastnn.bench`, the table shared with ``fastnn bench`` and the tests, so the benchmarks
and the command line always measure the same code. Run from ``asv_bench/``::

    asv machine --yes
    asv run -E existing:same --quick --show-stderr   # the current Python, fastnn installed
"""
