"""What both command lines (``lstm-ag-gradcheck``, ``lstm-ag-train``) do alike with options.

:class:`ArgumentParser` is :class:`argparse.ArgumentParser` with the conventions a user
expects: ``--version``; no abbreviations (``--step`` is not taken as ``--steps``); an option
that does not exist is named, with the closest one (``--hiden: no such option; did you mean
--hidden?``) instead of argparse's complaint about the next positional.
"""
from __future__ import annotations

import argparse
import difflib

__all__ = ["ArgumentParser"]


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


class ArgumentParser(argparse.ArgumentParser):
    """An argument parser with ``--version``, ``allow_abbrev=False`` and "did you mean"."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)
        from . import __version__
        self.add_argument("--version", action="version", version=f"%(prog)s {__version__}",
                          help="print the version of lstm-ag and exit")

    def unknown_option(self, args: list[str]) -> str | None:
        """The first of ``args`` that looks like an option none of this parser's is, with the
        closest known spelling, as one line; None when every option is known."""
        known = [s for action in self._actions for s in action.option_strings]
        for arg in args:
            if arg == "--":
                break
            if not arg.startswith("-") or arg == "-" or _is_number(arg):
                continue
            name = arg.split("=", 1)[0]
            if name in known:
                continue
            close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
            return f"{name}: no such option" + (f"; did you mean {close[0]}?" if close else "")
        return None

    def parse_args(self, args=None, namespace=None):
        import sys
        argv = sys.argv[1:] if args is None else list(args)
        problem = self.unknown_option(argv)
        if problem:
            self.error(problem)
        return super().parse_args(argv, namespace)
