"""The command line ``lstm-ag-gradcheck`` (``python -m lstm_ag.gradcheck``).

::

    lstm-ag-gradcheck                                   the library's own BPTT (or --method)
    lstm-ag-gradcheck --step my_lstm.py [--forward NAME] [--backward NAME] [--gate-order ifog]
    lstm-ag-gradcheck --sequence my_lstm.py --backward NAME --upstream last|all [--layout ...]

``--step`` checks a CS231n-style pair (defaults ``lstm_step_forward``, ``lstm_step_backward``);
``--sequence`` a backward of ``sum(dh_last * h_T)`` (``last``) or ``sum(dhs * hs)`` (``all``),
called as ``backward(params, xs, dh)``. Exit status: 0 everything agrees, 1 something is wrong
(or your function raised: the message names the file and line), 2 usage (a bad option, a file
that cannot be imported, a name it does not define): one line, never a traceback.
"""
from __future__ import annotations

import argparse
import difflib
import importlib.util
import os
import sys
import traceback

import numpy as np

from ..cli import ArgumentParser
from ..model import METHODS, value_and_grad
from ..params import init_params
from .adapters import LAYOUTS
from .check import check_gradients
from .compare import check_gate_order
from .examples import EXAMPLES, source
from .step import ReturnedWrongly, check_step

__all__ = ["main"]

EXIT_OK, EXIT_WRONG, EXIT_USAGE = 0, 1, 2


class UsageError(Exception):
    """A problem with the command line or the file named in it (exit status 2)."""


def _positive(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _gate_order(text):
    try:
        return check_gate_order(text.lower(), "--gate-order")
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="lstm-ag-gradcheck",
        description="Check an LSTM backward against autograd and central finite differences, "
                    "per array and gate, and say what is wrong. Without --step or --sequence "
                    "it checks this library's own gradients.",
        epilog="Exit status: 0 agree, 1 disagree (or your function raised), 2 usage.")
    what = parser.add_mutually_exclusive_group()
    what.add_argument("--example", choices=sorted(EXAMPLES), metavar="NAME",
                      help="print a correct student's file of that style to start from or "
                           f"compare with ({', '.join(sorted(EXAMPLES))}), e.g. "
                           "--example cs231n > my_lstm.py")
    what.add_argument("--step", metavar="FILE.py",
                      help="check a CS231n-style step pair defined in FILE.py")
    what.add_argument("--sequence", metavar="FILE.py",
                      help="check a sequence backward defined in FILE.py (with --backward and "
                           "--upstream)")
    parser.add_argument("--forward", metavar="NAME", default="lstm_step_forward",
                        help="--step: the forward's name (default lstm_step_forward)")
    parser.add_argument("--backward", metavar="NAME", default=None,
                        help="the backward's name (--step default: lstm_step_backward)")
    parser.add_argument("--gate-order", type=_gate_order, default="ifgo", metavar="ORDER",
                        help="order of the gates along the 4H axis of your weights: ifgo "
                             "(default; PyTorch, Keras) or ifog (CS231n), ...")
    parser.add_argument("--upstream", choices=["last", "all"],
                        help="--sequence: the loss, sum(dh_last * h_T) or sum(dhs * hs)")
    parser.add_argument("--layout", choices=list(LAYOUTS), default="dict",
                        help="--sequence: how your backward takes the weights (default dict: "
                             "Wx (D, 4H), Wh (H, 4H), b (4H,))")
    parser.add_argument("--input-size", type=_positive, default=3, metavar="D",
                        help="D (default 3)")
    parser.add_argument("--hidden-size", type=_positive, default=8, metavar="H",
                        help="H (default 8)")
    parser.add_argument("--output-size", type=_positive, default=2, metavar="O",
                        help="O of the readout (default 2)")
    parser.add_argument("--steps", type=_positive, default=6, metavar="T",
                        help="sequence length T (default 6)")
    parser.add_argument("--batch", type=_positive, default=2, metavar="B",
                        help="batch size B (default 2)")
    parser.add_argument("--layers", type=_positive, default=1, metavar="L",
                        help="stacked layers (default 1); rows per layer, direction and gate")
    parser.add_argument("--bidirectional", action="store_true",
                        help="a reverse direction in every layer")
    parser.add_argument("--seed", type=int, default=0, help="seed of weights and data")
    parser.add_argument("--dtype", choices=["float64", "float32"], default="float64")
    parser.add_argument("--method", choices=list(METHODS), default="bptt",
                        help="without --step/--sequence: the library's gradient to check "
                             "(default: the hand-written BPTT)")
    return parser


def _load(path):
    """The module defined by the file ``path``; UsageError when it cannot be imported.

    Its own imports resolve as under ``python FILE.py`` and ``python -m``: from the file's
    directory and from the current one."""
    if not os.path.isfile(path) and os.path.isfile(path + ".py"):
        path += ".py"
    if not os.path.isfile(path):
        raise UsageError(f"{path}: no such file")
    name = "_lstm_ag_user_" + os.path.splitext(os.path.basename(path))[0].replace("-", "_")
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise UsageError(f"{path}: not a Python file")
    module = importlib.util.module_from_spec(spec)
    added = [d for d in (os.path.dirname(os.path.abspath(path)), os.getcwd())
             if d not in sys.path]
    sys.path[:0] = added
    try:
        spec.loader.exec_module(module)
    except SyntaxError as err:
        raise UsageError(f"{path}: cannot be imported: SyntaxError at line {err.lineno}: "
                         f"{err.msg}") from None
    except SystemExit as err:
        raise UsageError(f"{path}: cannot be imported: it calls sys.exit({err.code!r}) when "
                         "imported (put that under `if __name__ == \"__main__\":`)") from None
    except Exception as err:                   # whatever the file raises on import
        raise UsageError(f"{path}: cannot be imported: {_where(err, path)}") from None
    finally:
        for d in added:
            sys.path.remove(d)
    return module


def _function(module, name, path, option):
    value = getattr(module, name, None)
    if not callable(value) or isinstance(value, type):
        mine = {k: v for k, v in vars(module).items() if callable(v) and not k.startswith("_")
                and getattr(v, "__module__", None) == module.__name__}
        functions = sorted(k for k, v in mine.items() if not isinstance(v, type))
        classes = sorted(k for k, v in mine.items() if isinstance(v, type))
        close = difflib.get_close_matches(name, functions, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        if classes:
            hint += (f" (it defines the class{'es' if len(classes) > 1 else ''} "
                     f"{', '.join(classes)}: to check a class's backward, call "
                     "lstm_ag.check_gradients from Python, see docs/gradcheck.md)")
        raise UsageError(f"{path} defines no function {name!r} ({option}); it defines: "
                         f"{', '.join(functions) or 'none'}{hint}")
    return value


def _where(err, path):
    """``Type: message (file line N)``, at the deepest frame inside ``path`` if any."""
    frames = [f for f in traceback.extract_tb(err.__traceback__)
              if os.path.abspath(f.filename) == os.path.abspath(path)]
    at = f" ({os.path.basename(path)} line {frames[-1].lineno})" if frames else ""
    return f"{type(err).__name__}: {err}{at}"


def _library(args):
    params = init_params(args.input_size, args.hidden_size, args.output_size, seed=args.seed,
                         dtype=args.dtype, num_layers=args.layers,
                         bidirectional=args.bidirectional)
    rng = np.random.default_rng(args.seed + 1)
    xs = rng.standard_normal((args.steps, args.batch, args.input_size)).astype(args.dtype)
    targets = rng.standard_normal((args.steps, args.batch, args.output_size)).astype(args.dtype)
    print(f"checking method={args.method!r}: D={args.input_size} H={args.hidden_size} "
          f"O={args.output_size} T={args.steps} B={args.batch} seed={args.seed}"
          + (f" layers={args.layers}" if args.layers > 1 else "")
          + (" bidirectional" if args.bidirectional else ""))
    return check_gradients(params, xs, targets,
                           backward=lambda p, x, y: value_and_grad(p, x, y, method=args.method))


def _step(args):
    module = _load(args.step)
    forward = _function(module, args.forward, args.step, "--forward")
    backward = _function(module, args.backward or "lstm_step_backward", args.step,
                         "--backward")
    print(f"checking {args.step}: {args.forward} and {args.backward or 'lstm_step_backward'}, "
          f"gate order {args.gate_order}, N={args.batch} D={args.input_size} "
          f"H={args.hidden_size} seed={args.seed}")
    return check_step(forward, backward, gate_order=args.gate_order, batch=args.batch,
                      input_size=args.input_size, hidden_size=args.hidden_size,
                      dtype=args.dtype, seed=args.seed)


def _sequence(args):
    if args.backward is None or args.upstream is None:
        raise UsageError("--sequence needs --backward NAME and --upstream last|all")
    module = _load(args.sequence)
    backward = _function(module, args.backward, args.sequence, "--backward")
    params = init_params(args.input_size, args.hidden_size, seed=args.seed, dtype=args.dtype,
                         num_layers=args.layers, bidirectional=args.bidirectional)
    if (args.layers > 1 or args.bidirectional) and args.layout != "dict":
        raise UsageError(f"--layout {args.layout} holds one layer and direction; check a "
                         "stacked or bidirectional backward with --layout dict")
    rng = np.random.default_rng(args.seed + 1)
    xs = rng.standard_normal((args.steps, args.batch, args.input_size)).astype(args.dtype)
    print(f"checking {args.sequence}: {args.backward}, upstream {args.upstream}, layout "
          f"{args.layout}, gate order {args.gate_order}, D={args.input_size} "
          f"H={args.hidden_size} T={args.steps} B={args.batch} seed={args.seed}")
    return check_gradients(params, xs, backward=backward, upstream=args.upstream,
                           layout=args.layout, gate_order=args.gate_order, seed=args.seed)


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 agree, 1 disagree, 2 usage)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.example:
        sys.stdout.write(source(args.example))
        return EXIT_OK
    user_file = args.step or args.sequence
    try:
        if args.step:
            report = _step(args)
        elif args.sequence:
            report = _sequence(args)
        else:
            report = _library(args)
    except UsageError as err:
        print(f"{parser.prog}: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"{parser.prog}: interrupted", file=sys.stderr)
        return 130
    except ReturnedWrongly as err:             # the user's function returned the wrong thing
        print(f"{parser.prog}: {err}", file=sys.stderr)
        return EXIT_WRONG
    except SystemExit as err:                  # the user's function called sys.exit()
        if user_file is None:
            raise
        print(f"{parser.prog}: your code called sys.exit({err.code!r}) instead of returning; "
              "nothing was checked", file=sys.stderr)
        return EXIT_WRONG
    except Exception as err:                   # the user's function raised
        if user_file is None:
            raise
        print(f"{parser.prog}: your code raised {_where(err, user_file)}", file=sys.stderr)
        return EXIT_WRONG
    print(report)
    return EXIT_OK if report.ok else EXIT_WRONG


if __name__ == "__main__":
    sys.exit(main())
