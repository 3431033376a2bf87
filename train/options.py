"""The trainer's command-line options, generated from :class:`train.config.TrainConfig`:
:func:`build_parser` for ``lstm-ag-train`` (and, for the options of each run, ``lstm-ag-train
sweep``), and the spelling of a setting as an option.

Standard library only at the top: :mod:`train.cli` imports this before its Ctrl-C handler
is installed; TrainConfig (and with it numpy) is imported inside the functions.
"""
import argparse
import textwrap

from .errors import prog as _prog

__all__ = ["build_parser", "diff_spec"]


def diff_spec(text: str) -> tuple[bool, int]:
    """``--diff``'s value: ``"1"`` first differences, ``"12"`` (or ``"M"``, the season)
    seasonal ones, ``"1,12"`` both. Returns ``(diff, seasonal_diff)``, seasonal_diff -1 for
    the season."""
    diff, season = False, 0
    for part in text.replace(" ", "").split(","):
        if part == "1" and not diff:
            diff = True
        elif part.upper() == "M" and not season:
            season = -1
        elif part.isdigit() and int(part) >= 2 and not season:
            season = int(part)
        else:
            raise argparse.ArgumentTypeError(
                f"{text!r}: give 1 (first differences), M or a period >= 2 (seasonal ones), "
                "or 1,M (both)")
    return diff, season


def _option(name):
    """The command-line spelling of a TrainConfig setting: seq_len -> --seq-len."""
    return name if name == "task" else "--" + name.replace("_", "-")


def _defaults_table():
    """One line per task: the per-task defaults, read from TrainConfig."""
    from .config import PER_TASK, TASK_NAMES, TrainConfig
    configs = [TrainConfig(task=task, data="FILE" if task == "series" else "")
               for task in TASK_NAMES]
    return "\n".join(f"  {config.task:9s}" + "  ".join(
        f"{_option(name)[2:]} {getattr(config, name)}" for name in PER_TASK)
        for config in configs)


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    """The argument parser. Every field of TrainConfig is an option (the task a positional);
    a setting not given is absent from the parsed namespace (the task: None), so that
    TrainConfig's default applies, or on --resume the checkpoint's value."""
    from dataclasses import fields

    from lstm_ag.cli import ArgumentParser

    from .config import FIXED_ON_RESUME, PER_TASK, SETTING_TYPES, TrainConfig
    parser = ArgumentParser(
        prog=prog or _prog(), formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Train the lstm_ag LSTM on a toy next-value task, or on your own series "
                    "(series --data FILE), and compare it with naive baselines; forecast "
                    "--out DIR forecasts with a trained series model; sweep runs seeds x a "
                    "grid of settings in parallel (see: sweep --help).",
        epilog="Defaults per task (an option given on the command line wins):\n"
               + _defaults_table() + "\n\nWrites DIR/model.npz, DIR/best.npz (the lowest "
               "validation MSE) and DIR/metrics.json\n(DIR: --out, default runs/TASK); "
               "forecast --out DIR writes DIR/forecast.csv.\n" + textwrap.fill(
                   "--resume continues DIR/model.npz to its run's total steps (or to --steps), "
                   "exactly as an uninterrupted run, with the checkpoint's settings; these may "
                   "not change: " + ", ".join(_option(name) for name in FIXED_ON_RESUME)
                   + ". A DIR holding a model is replaced only with --overwrite.", 79)
               + "\nExit status: 0 done, 1 non-finite loss, 2 usage error, bad checkpoint or "
               "DIR in use,\n3 DIR cannot be written, 130 interrupted (Ctrl-C saves a "
               "checkpoint), 143 SIGTERM (the same).")
    for f in fields(TrainConfig):
        meta = f.metadata
        default = "per task, below" if f.name in PER_TASK else f.default
        text = meta["doc"] + (f" (default: {default})" if default != "" else "")
        if f.name == "task":
            parser.add_argument("task", nargs="?", choices=(*meta["choices"], "forecast", "sweep"),
                                help=text + "; forecast: with the model in --out; sweep: many "
                                            "runs (sweep --help)")
        elif f.name == "diff":
            parser.add_argument("--diff", nargs="?", const="1", type=diff_spec,
                                metavar="1|M|1,M", default=argparse.SUPPRESS,
                                help=meta["doc"] + "; --diff M (a number, or M: the season) "
                                "models seasonal differences x[t] - x[t-M], --diff 1,M both; "
                                "--diff alone: 1")
        elif SETTING_TYPES[f.name] is bool:
            parser.add_argument(_option(f.name), action="store_true", default=argparse.SUPPRESS,
                                help=meta["doc"])
        elif meta["alias"]:
            parser.add_argument(_option(f.name), _option(meta["alias"]), dest=f.name,
                                type=SETTING_TYPES[f.name], metavar=meta["metavar"],
                                default=argparse.SUPPRESS, help=text)
        else:
            parser.add_argument(_option(f.name), type=SETTING_TYPES[f.name],
                                choices=meta["choices"], metavar=meta["metavar"],
                                default=argparse.SUPPRESS, help=text)
    parser.add_argument("--out", metavar="DIR", help="output directory (default: runs/TASK)")
    parser.add_argument("--resume", action="store_true",
                        help="continue DIR/model.npz to its run's total, or to --steps")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the model already in DIR (without it, refused)")
    parser.add_argument("--plot", action="store_true",
                        help="write DIR/plot.png (needs matplotlib)")
    parser.add_argument("--quiet", action="store_true", help="no progress lines")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--from-end", action="store_true",
                       help="forecast: the --horizon values after the series (the default)")
    where.add_argument("--on-test", action="store_true",
                       help="forecast: from the start of the test part, beside the truth")
    return parser
