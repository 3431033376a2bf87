"""The command line ``lstm-ag-gradcheck`` (``python -m lstm_ag.gradcheck``).

Checks one of the library's gradient methods (the hand BPTT by default) on a random model
against autograd and central finite differences, per parameter and gate. Exit status 0 when
everything agrees, 1 otherwise, 2 for a usage error.
"""
from __future__ import annotations

import argparse
import sys

import numpy as np

from ..model import METHODS, value_and_grad
from ..params import init_params
from .check import check_gradients

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """``python -m lstm_ag.gradcheck``: check a method's gradients on a random model."""
    parser = argparse.ArgumentParser(
        prog="lstm-ag-gradcheck",
        description="Check the library's gradients (hand BPTT by default) against autograd "
                    "and central finite differences, per parameter and gate.")
    parser.add_argument("--input-size", type=int, default=3, help="D (default 3)")
    parser.add_argument("--hidden-size", type=int, default=8, help="H (default 8)")
    parser.add_argument("--output-size", type=int, default=2, help="O (default 2)")
    parser.add_argument("--steps", type=int, default=6, help="sequence length T (default 6)")
    parser.add_argument("--batch", type=int, default=2, help="batch size B (default 2)")
    parser.add_argument("--seed", type=int, default=0, help="seed of weights and data")
    parser.add_argument("--dtype", choices=["float64", "float32"], default="float64")
    parser.add_argument("--method", choices=list(METHODS), default="bptt",
                        help="the gradient to check (default: the hand-written BPTT)")
    args = parser.parse_args(argv)
    for name in ("input_size", "hidden_size", "output_size", "steps", "batch"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    params = init_params(args.input_size, args.hidden_size, args.output_size, seed=args.seed,
                         dtype=args.dtype)
    rng = np.random.default_rng(args.seed + 1)
    xs = rng.standard_normal((args.steps, args.batch, args.input_size)).astype(args.dtype)
    targets = rng.standard_normal((args.steps, args.batch, args.output_size)).astype(args.dtype)
    report = check_gradients(
        params, xs, targets,
        backward=lambda p, x, y: value_and_grad(p, x, y, method=args.method))
    print(f"checking method={args.method!r}: D={args.input_size} H={args.hidden_size} "
          f"O={args.output_size} T={args.steps} B={args.batch} seed={args.seed}")
    print(report)
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
