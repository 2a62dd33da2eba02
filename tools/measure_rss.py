"""Measure resident memory over a long SimpleConvNet forward/backward loop.

A measurement, not a test: a leak in a kernel, the argmax/mask buffers or the Numba dispatch
shows up as RSS that keeps growing after warm-up. Prints ``VmRSS`` (``/proc/self/status``; falls
back to ``ru_maxrss``) at the checkpoints.

Usage::

    python tools/measure_rss.py [--iters 10000] [--batch 8]
"""

from __future__ import annotations

import argparse
import resource
import sys
import time

import numpy as np


def rss_mib() -> float:
    """Current resident set size in MiB (peak RSS where /proc is unavailable)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024.0 * 1024.0 if sys.platform == "darwin" else 1024.0)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--iters", type=int, default=10000)
    p.add_argument("--batch", type=int, default=8)
    args = p.parse_args(argv)

    from fastnn.nets import SimpleConvNet

    np.random.seed(0)
    net = SimpleConvNet(
        input_dim=(1, 12, 12),
        conv_param={"filter_num": 4, "filter_size": 3, "pad": 0, "stride": 1},
        hidden_size=16,
        output_size=10,
        dtype=np.float32,
    )
    x = np.random.rand(args.batch, 1, 12, 12).astype(np.float32)
    t = np.random.randint(0, 10, size=args.batch)
    checkpoints = {100, 1000, 5000, args.iters}
    print(f"start (after import): {rss_mib():.1f} MiB", flush=True)
    t0 = time.perf_counter()
    for it in range(1, args.iters + 1):
        grads = net.gradient(x, t)
        for k in net.params:  # SGD step, in place as the book's optimizer does
            net.params[k] -= 0.01 * grads[k]
        if it in checkpoints:
            print(f"iter {it:>6}: VmRSS {rss_mib():.1f} MiB  "
                  f"({time.perf_counter() - t0:.1f} s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
