"""Run a benchmark module in a child process, with or without the OpenBLAS pin.

OpenBLAS reads ``OPENBLAS_CORETYPE`` and ``OPENBLAS_L2_SIZE`` (:data:`machine.PIN_VARS`) once,
when numpy loads it; a process that has imported numpy cannot drop them any more. So the
runners re-execute themselves: ``python -m benchmarks ...`` starts ``benchmarks`` again in a
child whose environment lacks the pin (or keeps it, for the pinned comparison), with a hidden
``--child JSON`` argument that says it is the child and what was removed.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

from . import machine

__all__ = ["ROOT", "CHILD_FLAG", "child_info", "run_child"]

#: The repository root: put first on the child's ``sys.path``, as ``python -m`` from the root
#: does, so that the child runs this work tree's benchmarks and lstm_ag.
ROOT = Path(__file__).resolve().parent.parent
#: The hidden argument that marks the child; its value is a JSON object
#: ``{"removed": {var: value}, "command": the parent's command line}``.
CHILD_FLAG = "--child"


def child_info(text):
    """Parse the ``--child`` argument (argparse ``type=``)."""
    info = json.loads(text)
    if not isinstance(info, dict):
        raise ValueError("--child takes a JSON object")
    return info


def run_child(module, argv, *, pinned=False, pin=None, command=None, capture=True):
    """Run ``python -m module *argv`` in a child process and wait for it.

    - pinned: keep this process's environment as it is; otherwise drop the pin variables.
    - pin: a dict of pin variables to set in the child (e.g. ``{"OPENBLAS_CORETYPE":
      "Haswell"}``, to compare with a pin this environment does not have); implies pinned.
    - command: the command line to record in the child's report.
    - capture: return the child's stdout (its stderr, the progress, goes straight through).
    Returns ``(exit status, stdout or None)``.
    """
    if pin:
        env = dict(os.environ, **pin)
        removed = {}
    elif pinned:
        env = dict(os.environ)
        removed = {}
    else:
        env = machine.unpinned_env()
        removed = machine.pin_in_effect()
    info = {"removed": removed, "command": command}
    # sys.argv of the child: ['-c', ROOT, module, *argv]; run_module puts the module's file
    # in sys.argv[0], so the module sees exactly ``argv`` in sys.argv[1:]
    boot = ("import runpy, sys; sys.path.insert(0, sys.argv.pop(1)); "
            "runpy.run_module(sys.argv.pop(1), run_name='__main__', alter_sys=True)")
    cmd = [sys.executable, "-c", boot, str(ROOT), module, *argv,
           CHILD_FLAG, json.dumps(info)]
    done = subprocess.run(cmd, env=env, stdout=subprocess.PIPE if capture else None,
                          text=True)
    return done.returncode, done.stdout
