"""The command line ``lstm-ag-gradcheck`` (``python -m lstm_ag.gradcheck``).

::

    lstm-ag-gradcheck                                   the library's own BPTT (or --method)
    lstm-ag-gradcheck --step my_lstm.py [--forward NAME] [--backward NAME] [--gate-order ifog]
    lstm-ag-gradcheck --sequence my_lstm.py --backward NAME --upstream last|all [--layout ...]
    lstm-ag-gradcheck my_lstm.py [--style cs231n|dls|notebook|karpathy|torch] [--plot FILE]

``--step`` checks a CS231n-style pair (defaults ``lstm_step_forward``, ``lstm_step_backward``);
``--sequence`` a backward of ``sum(dh_last * h_T)`` (``last``) or ``sum(dhs * hs)`` (``all``),
called as ``backward(params, xs, dh)``. A file alone is checked in the style of the
functions it defines (found from their names and said, or ``--style``): each pair it defines
(a step pair, a sequence pair), as the course writes them (:mod:`lstm_ag.gradcheck.styles`);
``--style`` with ``--step`` or ``--sequence`` checks that pair alone. ``--plot FILE.png`` draws a
sequence check's errors per block and length. Exit status: 0 everything agrees, 1 something is wrong
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

from ..model import METHODS, value_and_grad
from ..params import init_params
from .adapters import LAYOUTS
from .check import check_gradients
from .compare import check_gate_order
from .step import ReturnedWrongly, check_step
from .styles import STYLES, StyleMismatch, describe, detect, get_style, notebook_class

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
    parser = argparse.ArgumentParser(
        prog="lstm-ag-gradcheck",
        description="Check an LSTM backward against autograd and central finite differences, "
                    "per array and gate, and say what is wrong. Without --step or --sequence "
                    "it checks this library's own gradients.",
        epilog="Exit status: 0 agree, 1 disagree (or your function raised), 2 usage.")
    parser.add_argument("file", nargs="?", metavar="FILE.py",
                        help="check the LSTM functions FILE.py defines, in their style (found "
                             "from their names, or --style)")
    parser.add_argument("--style", choices=list(STYLES),
                        help="the course's style of your functions: " + "; ".join(
                            f"{s.name}: {s.course}" for s in STYLES.values()))
    parser.add_argument("--plot", metavar="FILE.png",
                        help="a sequence check: draw the relative error per gate block and "
                             "time step to FILE (needs matplotlib: pip install lstm-ag[plot])")
    what = parser.add_mutually_exclusive_group()
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


def _style_hint(module, path):
    """A sentence naming the style ``module``'s functions are in, when it is not CS231n's."""
    try:
        style, found = detect(module)
    except ValueError:
        return ""
    if style.name == "cs231n":
        return ""
    names = "; ".join(", ".join(f[2]) for f in found.values())
    return (f" (it defines {names}: the {style.name} style; run lstm-ag-gradcheck {path}, or "
            f"pass --style {style.name})")


def _step(args):
    module = _load(args.step)
    if args.forward == "lstm_step_forward" and not callable(getattr(module, args.forward, None)):
        hint = _style_hint(module, args.step)
        if hint:
            raise UsageError(f"{args.step} defines no function 'lstm_step_forward' (--forward)"
                             + hint)
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


def _found_style(args):
    """The module of ``--step FILE`` or ``--sequence FILE`` given without the names today's
    checks need, when it is in a style that has that pair (then it is checked in that
    style); else None."""
    kind = "step" if args.step else "sequence"
    plain = (args.step and args.forward == "lstm_step_forward" and args.backward is None) or \
        (args.sequence and args.backward is None and args.upstream is None)
    if not plain or args.file or args.style:
        return None
    module = _load(args.step or args.sequence)
    if kind == "step" and callable(getattr(module, "lstm_step_forward", None)):
        return None
    try:
        _, found = detect(module)
    except ValueError:
        return None
    return module if kind in found else None


def _pairs(args, module=None):
    """``(style, {kind: (forward, backward, names)})`` of the file to check in a style."""
    path = args.file or args.step or args.sequence
    if path is None:
        raise UsageError("--style needs the file to check: lstm-ag-gradcheck FILE.py --style S")
    if args.file and (args.step or args.sequence):
        raise UsageError("give the file once: FILE.py alone, or --step/--sequence FILE.py")
    if args.file and (args.forward != "lstm_step_forward" or args.backward):
        raise UsageError("with --forward/--backward, say which pair they are: --step FILE.py "
                         "or --sequence FILE.py")
    module = module or _load(path)
    if args.style is None:
        try:
            style, found = detect(module)
        except ValueError as err:
            raise UsageError(f"{path}: {err}; pass --style, or check a backward in "
                             "lstm_ag's layout with --sequence FILE --backward NAME "
                             "--upstream last|all") from None
    else:
        style, found = get_style(args.style), {}
        for kind, pair in (("step", style.step), ("sequence", style.sequence)):
            wanted = ((args.step and kind == "step") or (args.sequence and kind == "sequence")
                      or args.file)
            if pair is None or not wanted:
                continue
            names = (args.forward if args.forward != "lstm_step_forward" else pair.forward,
                     args.backward or pair.backward)
            if style.call is not None:
                cls = (_method(module, args.backward, path) if args.backward
                       else notebook_class(module))
                if cls is not None:
                    found[kind] = (cls, cls, (cls.__name__,))
            elif all(callable(_resolve(module, n)) for n in names) or not args.file:
                found[kind] = (*(_method(module, n, path) for n in names), names)
        if not found:
            raise UsageError(f"{path} defines none of the {style.name} style's functions "
                             f"({describe(style)})" + (_style_hint(module, path) or
                                                       "; with other names, give them: --step "
                                                       "or --sequence FILE.py --forward NAME "
                                                       "--backward NAME"))
    if args.step:
        found = {k: v for k, v in found.items() if k == "step"}
    elif args.sequence:
        found = {k: v for k, v in found.items() if k == "sequence"}
    if not found:
        raise UsageError(f"the {style.name} style has no {'step' if args.step else 'sequence'} "
                         f"pair; check {path} without --{'step' if args.step else 'sequence'}")
    return style, found


def _resolve(module, name):
    value = module
    for part in name.split("."):
        value = getattr(value, part, None)
    return value


def _method(module, name, path):
    """The function (or ``Class.method``) ``name`` in ``module``; UsageError if undefined."""
    value = _resolve(module, name)
    return value if callable(value) else _function(module, name, path, "--forward/--backward")


def _styled(args, module=None):
    """Check the file's pairs in their style; print each report; the reports."""
    style, found = _pairs(args, module)
    if args.plot and "sequence" not in found:
        raise UsageError("--plot draws a sequence check; the file's pair is a step pair")
    names = "; ".join(", ".join(f[2]) for f in found.values())
    print(f"style {style.name} (found {names})")
    reports = []
    for kind, (forward, backward, _) in found.items():
        if kind == "step":
            print(f"checking the step pair: N={args.batch} D={args.input_size} "
                  f"H={args.hidden_size} seed={args.seed}")
            reports.append(check_step(forward, backward, style=style.name, batch=args.batch,
                                      input_size=args.input_size, hidden_size=args.hidden_size,
                                      dtype=args.dtype, seed=args.seed))
        else:
            single = style.name == "notebook"
            params = init_params(args.input_size, args.hidden_size, seed=args.seed,
                                 dtype=args.dtype)
            rng = np.random.default_rng(args.seed + 1)
            shape = (args.steps, args.input_size) if single else \
                (args.steps, args.batch, args.input_size)
            xs = rng.standard_normal(shape).astype(args.dtype)
            print(f"checking the sequence pair: D={args.input_size} H={args.hidden_size} "
                  f"T={args.steps}" + ("" if single else f" B={args.batch}")
                  + f" seed={args.seed}")
            reports.append(check_gradients(params, xs, forward=forward, backward=backward,
                                           style=style.name, seed=args.seed))
        print(reports[-1])
        if kind == "sequence" and args.plot:
            _plot(reports[-1], args.plot)
    return reports


def _plot(report, path):
    """``report.plot(path)``; UsageError without matplotlib or when ``path`` cannot be
    written."""
    try:
        report.plot(path)
    except ImportError as err:
        raise UsageError(str(err)) from None
    except (OSError, ValueError) as err:
        raise UsageError(f"--plot {path}: {getattr(err, 'strerror', None) or err}") from None
    print(f"wrote {path}")


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 agree, 1 disagree, 2 usage)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    user_file = args.step or args.sequence or args.file
    try:
        module = None if args.file or args.style else _found_style(args)
        if args.file or args.style or module is not None:
            reports = _styled(args, module)
            return EXIT_OK if all(r.ok for r in reports) else EXIT_WRONG
        if args.step and args.plot:
            raise UsageError("--plot draws a sequence check (--sequence), not --step")
        if args.step:
            report = _step(args)
        elif args.sequence:
            report = _sequence(args)
        else:
            report = _library(args)
    except StyleMismatch as err:
        print(f"{parser.prog}: error: {err.cli}", file=sys.stderr)
        return EXIT_USAGE
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
    if args.plot:
        try:
            _plot(report, args.plot)
        except UsageError as err:
            print(f"{parser.prog}: error: {err}", file=sys.stderr)
            return EXIT_USAGE
    return EXIT_OK if report.ok else EXIT_WRONG


if __name__ == "__main__":
    sys.exit(main())
