"""The command line ``lstm-ag-gradcheck`` (``python -m lstm_ag.gradcheck``).

::

    lstm-ag-gradcheck                                   the library's own BPTT (or --method)
    lstm-ag-gradcheck --step my_lstm.py [--forward NAME] [--backward NAME] [--gate-order ifog]
    lstm-ag-gradcheck --sequence my_lstm.py --backward NAME --upstream last|all [--layout ...]
    lstm-ag-gradcheck my_lstm.py [--style cs231n|dls|notebook|karpathy|torch] [--plot FILE]

    lstm-ag-gradcheck --grade DIR_OR_FILE... [--csv FILE] [--json FILE] [--jobs N] [...]

``--step`` checks a CS231n-style pair (defaults ``lstm_step_forward``, ``lstm_step_backward``);
``--sequence`` a backward of ``sum(dh_last * h_T)`` (``last``) or ``sum(dhs * hs)`` (``all``),
called as ``backward(params, xs, dh)``. A file alone is checked in the style of the
functions it defines (found from their names and said, or ``--style``): each pair it defines
(a step pair, a sequence pair), as the course writes them (:mod:`lstm_ag.gradcheck.styles`);
``--style`` with ``--step`` or ``--sequence`` checks that pair alone. ``--plot FILE.png`` draws a
sequence check's errors per block and length. The user's file is imported and run in a child
process with ``--timeout`` and ``--memory`` (:mod:`lstm_ag.gradcheck.sandbox`); this process
makes every comparison and the verdict. ``--grade`` checks many files, each as one of those
commands (:mod:`lstm_ag.gradcheck.grade`). Exit status: 0 everything agrees, 1 something is
wrong (or your code raised, hung, exhausted its memory, exited: the message names the file and
line or the call), 2 usage (a bad option, a file that cannot be imported, a name it does not
define), 130 Ctrl-C, 143 SIGTERM: one line, never a traceback.
"""
from __future__ import annotations

import argparse
import contextlib
import difflib
import importlib.util
import json
import os
import signal
import sys
import traceback

import numpy as np

from ..cli import ArgumentParser
from ..model import METHODS, value_and_grad
from ..params import init_params
from . import grade, sandbox
from .adapters import LAYOUTS
from .check import check_gradients
from .compare import check_gate_order
from .examples import EXAMPLES, source
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
    parser = ArgumentParser(
        prog="lstm-ag-gradcheck",
        description="Check an LSTM backward against autograd and central finite differences, "
                    "per array and gate, and say what is wrong. Without --step or --sequence "
                    "it checks this library's own gradients.",
        epilog="Exit status: 0 agree, 1 disagree (or your code raised, hung, exhausted its "
               "memory or exited), 2 usage (or your file failed to import), 130 Ctrl-C, "
               "143 SIGTERM.")
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
    _add_sandbox_options(parser)
    _add_grade_options(parser)
    return parser


def _positive_float(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not (value > 0 and np.isfinite(value)):
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text}")
    return value


def _megabytes(text):
    value = _positive(text)
    if value < 64:
        raise argparse.ArgumentTypeError(f"expected at least 64 (MB), got {value}")
    return value


def _add_sandbox_options(parser):
    """Where your code runs: a child process with a time and a memory limit (see sandbox.py)."""
    group = parser.add_argument_group(
        "running your code", "your file is imported and run in a child process; the check "
                             "and its verdict are made in this one")
    group.add_argument("--timeout", type=_positive_float, metavar="SECONDS",
                       help="most seconds each call of your code may take, the import too "
                            "(default 5 s plus a numpy loop's time at the problem's size)")
    group.add_argument("--memory", type=_megabytes, default=sandbox.DEFAULT_MEMORY_MB,
                       metavar="MB", help="your code's memory (address space) limit "
                                          f"(default {sandbox.DEFAULT_MEMORY_MB})")
    group.add_argument("--in-process", action="store_true",
                       help="run your code in this process, without limits (for pdb and "
                            "breakpoint())")
    group.add_argument("--summary", metavar="FILE.json", help=argparse.SUPPRESS)


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
    module = _load_user(args, args.step)
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
    module = _load_user(args, args.sequence)
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
    module = _load_user(args, args.step or args.sequence)
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
    module = module or _load_user(args, path)
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
    args.found_style = style.name
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
    """Run the command line; returns the exit status (0 agree, 1 disagree, 2 usage, 130
    Ctrl-C, 143 SIGTERM)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.example:
        sys.stdout.write(source(args.example))
        return EXIT_OK
    with _sigterm_as_interrupt():
        try:
            if args.grade:
                return _grade(parser, args)
            status, report, message = _check(parser, args)
            if args.summary:
                _write_summary(args, status, report, message)
            return status
        except KeyboardInterrupt as err:
            return _interrupted(parser, err)


def _check(parser, args):
    """One check, printed: ``(exit status, report or None, the one-line message (without
    the program's name) or None)``.

    A user's file runs in a child process (:class:`~lstm_ag.gradcheck.sandbox.Sandbox`) unless
    ``--in-process``; what it printed is shown (cut) before the report or the message."""
    user_file = args.step or args.sequence or args.file
    box, report, head, message, printed = None, None, "", None, False
    try:
        if user_file and not args.in_process and sandbox.AVAILABLE:
            box = args.sandbox = sandbox.Sandbox(args.timeout or _default_timeout(args),
                                                 args.memory)
            box.start()
        reports, printed = _dispatch(args)
        report = next((r for r in reports if not r.ok), reports[-1])
        status = EXIT_OK if all(r.ok for r in reports) else EXIT_WRONG
    except StyleMismatch as err:               # a signature of another style, named as such
        status, head, message = EXIT_USAGE, "error: ", err.cli
    except UsageError as err:
        status, head, message = EXIT_USAGE, "error: ", str(err)
    except sandbox.Stopped as err:             # timed out, exited, killed, out of memory
        status = EXIT_USAGE if err.stage == "import" else EXIT_WRONG
        head, message = f"{user_file}: ", str(err)
    except ReturnedWrongly as err:             # the user's function returned the wrong thing
        status, message = EXIT_WRONG, str(err)
    except sandbox.RemoteRaised as err:        # the user's function raised in the child
        status, message = EXIT_WRONG, f"your code raised {err.where}"
    except SystemExit as err:                  # the user's function called sys.exit()
        if user_file is None:
            raise
        status, message = EXIT_WRONG, (f"your code called sys.exit({err.code!r}) instead of "
                                       "returning; nothing was checked")
    except Exception as err:                   # the user's function raised (--in-process)
        if user_file is None:
            raise
        status, message = EXIT_WRONG, f"your code raised {_where(err, user_file)}"
    finally:
        if box is not None:
            box.close()
    _reopen_streams()
    if box is not None:
        out, err = box.printed()
        print(out, end="", flush=True)
        print(err, end="", file=sys.stderr, flush=True)
    if message is not None:
        print(f"{parser.prog}: {head}{message}", file=sys.stderr)
        return status, report, message
    if not printed:
        print(report)
        if args.plot:
            try:
                _plot(report, args.plot)
            except UsageError as err:
                message = str(err)
                print(f"{parser.prog}: error: {message}", file=sys.stderr)
                return EXIT_USAGE, report, message
    return status, report, message


def _dispatch(args):
    """The checks the options ask for: ``(reports, printed)``; a file checked in its style
    prints each of its reports as it goes (``printed``), the others are printed by the
    caller."""
    module = None if args.file or args.style else _found_style(args)
    if args.file or args.style or module is not None:
        return _styled(args, module), True
    if args.step and args.plot:
        raise UsageError("--plot draws a sequence check (--sequence), not --step")
    if args.step:
        return [_step(args)], False
    if args.sequence:
        return [_sequence(args)], False
    return [_library(args)], False


# ---------------------------------------------------------------- running your code apart

class Terminated(KeyboardInterrupt):
    """SIGTERM (a batch scheduler, ``docker stop``, ``kill``): stops as a Ctrl-C, exit 143."""


@contextlib.contextmanager
def _sigterm_as_interrupt():
    """SIGTERM raises :class:`Terminated` while inside (in the main thread only)."""
    def handler(signum, frame):
        raise Terminated
    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:                         # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _interrupted(parser, err):
    if isinstance(err, Terminated):
        print(f"{parser.prog}: stopped (SIGTERM)", file=sys.stderr)
        return 143
    print(f"{parser.prog}: interrupted", file=sys.stderr)
    return 130


def _reopen_streams():
    """Our stdout and stderr again if the user's code closed them (--in-process)."""
    for name, fd in (("stdout", 1), ("stderr", 2)):
        stream = getattr(sys, name)
        if stream is None or getattr(stream, "closed", False):
            setattr(sys, name, open(fd, "w", closefd=False))     # noqa: SIM115


def _load_user(args, path):
    """The user's module: a proxy of it imported in the child, or (--in-process) itself;
    imported once per command, however many checks look at it."""
    loaded = vars(args).setdefault("loaded", {})
    if path in loaded:
        return loaded[path]
    if args.in_process or not sandbox.AVAILABLE:
        module = _load(path)
        _reopen_streams()
    else:
        try:
            module = args.sandbox.load(path)
        except sandbox.UserFileError as err:
            raise UsageError(str(err)) from None
    loaded[path] = module
    return module


def _default_timeout(args, step=None):
    """--timeout's default for the problem the options describe (seconds per call)."""
    steps = 1 if (bool(args.step) if step is None else step) else args.steps
    stacks = args.layers * (2 if args.bidirectional else 1)
    return sandbox.default_timeout(steps * stacks, args.batch, args.input_size,
                                   args.hidden_size)


def _style(args, report):
    """What the grading table calls the way the file was checked."""
    style = (getattr(args, "style", None) or getattr(report, "style", None)
             or getattr(args, "found_style", None))
    if style:
        return str(style)
    if args.file:
        return "not found"                     # the file stopped before its style was known
    if args.step:
        return f"step (gate order {args.gate_order})"
    return f"sequence ({args.upstream}, {args.layout})"


def _first_wrong(report):
    """The name of the first row that is not ok (the forward's first, at the first wrong
    length for a sequence), or None."""
    for rows in (report.forward, report.bad_rows or report.rows):
        for r in rows:
            if not r.ok:
                return r.name
    return None


def _write_summary(args, status, report, message):
    """What --grade reads back: one JSON object (see grade.py's FIELDS)."""
    summary = {"file": args.step or args.sequence or args.file, "style": _style(args, report),
               "ok": status == EXIT_OK and report is not None and bool(report.ok),
               "first_wrong_row": None, "first_wrong_length": None,
               "diagnosis": message or "",
               "exit_status": status, "seconds": 0.0}
    if report is not None:
        summary.update(first_wrong_row=_first_wrong(report),
                       first_wrong_length=report.first_bad_length,
                       diagnosis=(report.diagnosis or [report.verdict()])[0],
                       seconds=round(report.seconds, 3))
    with open(args.summary, "w", encoding="utf-8") as f:
        json.dump(summary, f)


# ---------------------------------------------------------------- teachers: --grade

_GRADE_OPTIONS = ("grade", "csv", "json", "jobs")


def _add_grade_options(parser):
    group = parser.add_argument_group(
        "teachers", "check many submissions, each in its own process with the limits above, "
                    "with the other options as for one file")
    group.add_argument("--grade", nargs="+", metavar="DIR_OR_FILE",
                       help="check every .py file in these folders (and these files)")
    group.add_argument("--csv", metavar="FILE", help="--grade: write the table as CSV")
    group.add_argument("--json", metavar="FILE", help="--grade: write the table as JSON")
    group.add_argument("--jobs", type=_positive, default=1, metavar="N",
                       help="--grade: files checked at once (default 1)")


def _forwarded(parser, args):
    """The options given, as argv, for each file's own check (all but --grade's own, and
    --step/--sequence, which _grade_command sets)."""
    out = []
    for action in parser._actions:
        dest = action.dest
        if (not action.option_strings or dest in (*_GRADE_OPTIONS, "help", "step", "sequence",
                                                  "summary", "plot", "example", "version")):
            continue
        value = getattr(args, dest, None)
        if value == action.default or value is None:
            continue
        if action.nargs == 0:
            out.append(action.option_strings[0])
        elif isinstance(value, list):
            out += [action.option_strings[0], *map(str, value)]
        else:
            out += [action.option_strings[0], str(value)]
    return out


def _grade_command(parser, args, path):
    """The argv checking one submission: as ``--sequence`` with --upstream, as ``--step``
    with --forward or --backward, else the file alone (in the style of its functions, or
    --style)."""
    if args.upstream:
        what = ["--sequence", path]
    elif args.forward != "lstm_step_forward" or args.backward:
        what = ["--step", path]
    else:
        what = [path]
    return [sys.executable, "-m", "lstm_ag.gradcheck", *what, *_forwarded(parser, args)]


def _grade(parser, args):
    """--grade: the table on the screen (and --csv, --json); 0 when every file agrees."""
    if args.step or args.sequence or args.file:
        print(f"{parser.prog}: error: --grade takes the files itself: drop --step/--sequence",
              file=sys.stderr)
        return EXIT_USAGE
    try:
        files = grade.submissions(args.grade)
    except ValueError as err:
        print(f"{parser.prog}: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    per_call = args.timeout or _default_timeout(args, step=not args.upstream)
    print(f"grading {len(files)} file{'s' if len(files) > 1 else ''}, {args.jobs} at a time, "
          f"{per_call:.3g} s per call of their code, {args.memory} MB each", file=sys.stderr)
    rows, interrupted = grade.grade(
        files, lambda path: _grade_command(parser, args, path), jobs=args.jobs,
        backstop=60 * per_call + 120, progress=sys.stderr)
    print("\n".join(grade.table(rows)))
    for path, write in ((args.csv, grade.write_csv), (args.json, grade.write_json)):
        if path:
            try:
                write(rows, path)
            except OSError as err:
                print(f"{parser.prog}: error: cannot write {path}: {err.strerror}",
                      file=sys.stderr)
                return 3
    if interrupted is not None:
        raise interrupted
    return EXIT_OK if all(r["ok"] for r in rows) else EXIT_WRONG


if __name__ == "__main__":
    sys.exit(main())
