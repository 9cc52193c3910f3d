#!/usr/bin/python3
"""forward_torch.py — the PyTorch peer of bench_forward: the same Conv4-64
network (4 x [conv3x3 64 no bias, BatchNorm, ReLU, maxpool 2], GAP, linear 5)
at 3xSIDExSIDE (default 64), batch 256, eval mode, NCHW and channels_last.

usage: OPENBLAS_NUM_THREADS=N /usr/bin/python3 forward_torch.py THREADS [REPS [SIDE]]
Prints one line per memory format: "torch <format> <threads> <images/s>".
"""
import sys
import time

import torch
import torch.nn as nn


def conv4(width=64, classes=5):
    layers, cin = [], 3
    for _ in range(4):
        layers += [nn.Conv2d(cin, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True),
                   nn.MaxPool2d(2, 2)]
        cin = width
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, classes))


def main():
    threads = int(sys.argv[1]) if len(sys.argv) > 1 else 1
    reps = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    side = int(sys.argv[3]) if len(sys.argv) > 3 else 64
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    net = conv4().eval()
    x = torch.randn(256, 3, side, side)
    for fmt, mf in (("nchw", torch.contiguous_format), ("channels_last", torch.channels_last)):
        m = net.to(memory_format=mf)
        xi = x.contiguous(memory_format=mf)
        with torch.inference_mode():
            m(xi)
            best = float("inf")
            for _ in range(reps):
                t = time.perf_counter()
                m(xi)
                best = min(best, time.perf_counter() - t)
        print(f"torch {fmt} {threads} {256 / best:.1f}", flush=True)


if __name__ == "__main__":
    main()
