"""Teachers' grading: every submission checked by its own ``lstm-ag-gradcheck``, one table.

::

    lstm-ag-gradcheck --grade submissions/ --gate-order ifog --csv grades.csv --json grades.json

Each file is checked exactly as ``lstm-ag-gradcheck --step FILE ...`` checks it alone (same
options, same child process with its time and memory limits, see
:mod:`lstm_ag.gradcheck.sandbox`), in a process of its own, ``jobs`` at a time. That process
writes a summary (JSON) that this one validates; a submission that hangs, exhausts its memory,
exits or prints megabytes is a row saying so, and the others go on. A process that outlives a
generous backstop (``backstop`` seconds) is stopped with SIGTERM, then SIGKILL.
"""
from __future__ import annotations

import contextlib
import csv
import json
import os
import signal
import subprocess
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed

__all__ = ["FIELDS", "submissions", "grade", "table", "write_csv", "write_json"]

#: The columns, as in the CSV and JSON files; the screen's headers spell them out.
FIELDS = ("file", "style", "ok", "first_wrong_row", "first_wrong_length", "diagnosis",
          "exit_status", "seconds")
_HEADERS = ("file", "style", "ok", "first wrong row", "first wrong length",
            "diagnosis or outcome")
_SUMMARY_TYPES = {"style": str, "ok": bool, "first_wrong_row": (str, type(None)),
                  "first_wrong_length": (int, type(None)), "diagnosis": str,
                  "exit_status": int, "seconds": (int, float)}


def submissions(paths: list[str]) -> list[str]:
    """The Python files named by ``paths``: files as given, folders' ``*.py`` (recursively,
    sorted; hidden folders and ``__pycache__`` skipped). ValueError naming a path that does
    not exist, or when there is no file at all."""
    files = []
    for path in paths:
        if os.path.isdir(path):
            found = []
            for folder, dirs, names in os.walk(path):
                dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d != "__pycache__")
                found += [os.path.join(folder, n) for n in names if n.endswith(".py")]
            files += sorted(found)
        elif os.path.isfile(path):
            files.append(path)
        else:
            raise ValueError(f"--grade: {path}: no such file or folder")
    if not files:
        raise ValueError(f"--grade: no .py file in {', '.join(paths)}")
    return files


def _row(path, summary, status, stderr):
    """The table's row of one file, from its summary (validated) or from what happened."""
    row = dict.fromkeys(FIELDS)
    row.update(file=path, ok=False, exit_status=status)
    try:
        with open(summary, encoding="utf-8") as f:
            data = json.load(f)
        if not (isinstance(data, dict)
                and all(isinstance(data.get(k), t) for k, t in _SUMMARY_TYPES.items())):
            raise ValueError
    except (OSError, ValueError):
        lines = stderr.strip().splitlines()
        row.update(style="-", diagnosis=f"the checker exited with status {status} without a "
                   "summary" + (f": {lines[-1]}" if lines else ""))
        return row
    row.update({k: data[k] for k in _SUMMARY_TYPES})
    row["exit_status"] = status
    row["ok"] = data["ok"] and status == 0          # both must say so
    return row


def _stop(proc):
    """SIGTERM the process (it stops its child and says so), SIGKILL it after 5 s."""
    for sig, wait in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 10.0)):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


class _Runner:
    """Runs the per-file commands, remembering the running ones so a stop can end them."""

    def __init__(self, command, backstop, folder):
        self.command, self.backstop, self.folder = command, backstop, folder
        self.running, self.lock, self.stopping = set(), threading.Lock(), threading.Event()

    def one(self, index, path):
        start = time.monotonic()
        summary = os.path.join(self.folder, f"{index}.json")
        err_path = os.path.join(self.folder, f"{index}.err")
        if self.stopping.is_set():
            return None
        with open(os.devnull, "wb") as out, open(err_path, "wb") as err:
            proc = subprocess.Popen([*self.command(path), "--summary", summary],
                                    stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                    start_new_session=True)
        with self.lock:
            self.running.add(proc)
        if self.stopping.is_set():          # stop_all ran while this one started
            _stop(proc)
        late = False
        try:
            proc.wait(timeout=self.backstop)
        except subprocess.TimeoutExpired:
            late = True
            _stop(proc)
        finally:
            with self.lock:
                self.running.discard(proc)
        with open(err_path, encoding="utf-8", errors="replace") as f:
            row = _row(path, summary, proc.returncode, f.read())
        if late:
            row.update(ok=False, diagnosis=f"the check did not finish within {self.backstop:g} s "
                       "(stopped)")
        row["seconds"] = round(time.monotonic() - start, 2)
        return row

    def stop_all(self):
        self.stopping.set()
        with self.lock:
            running = list(self.running)
        for proc in running:
            _stop(proc)


def _short(row):
    """The progress line's verdict: OK, the first wrong row, or the outcome (cut)."""
    if row["ok"]:
        return "OK"
    if row["first_wrong_row"]:
        return f"NOT OK ({row['first_wrong_row']})"
    text = row["diagnosis"] or ""
    return f"NOT OK: {text if len(text) <= 60 else text[:57] + '...'}"


def grade(files: list[str], command, *, jobs: int = 1, backstop: float = 600.0,
          progress=None) -> tuple[list[dict], KeyboardInterrupt | None]:
    """Check every file; ``(rows, interrupted)``, a row per file in the order given.

    - command(path) -> the argv (a list, ``sys.executable`` first) checking one file; this
      adds ``--summary FILE``.
    - jobs: files checked at once; backstop: seconds after which a file's process is stopped.
    - progress: a stream for one line per finished file (stderr), or None.
    A Ctrl-C or SIGTERM (KeyboardInterrupt) stops the running checks; the files not checked
    get a row saying so, and ``interrupted`` is that KeyboardInterrupt (else None).
    """
    rows = [None] * len(files)
    interrupted = None
    width = len(str(len(files)))
    with tempfile.TemporaryDirectory(prefix="lstm-ag-grade-") as folder:
        runner = _Runner(command, backstop, folder)
        pool = ThreadPoolExecutor(max_workers=jobs)
        try:
            futures = {pool.submit(runner.one, k, path): k for k, path in enumerate(files)}
            for done, future in enumerate(as_completed(futures), 1):
                k = futures[future]
                rows[k] = future.result()
                if progress is not None and rows[k] is not None:
                    print(f"[{done:>{width}}/{len(files)}] {files[k]}: {_short(rows[k])} "
                          f"({rows[k]['seconds']:.1f} s)", file=progress, flush=True)
        except KeyboardInterrupt as err:
            interrupted = err
            runner.stop_all()
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
    for k, path in enumerate(files):
        if rows[k] is None:
            rows[k] = dict(dict.fromkeys(FIELDS), file=path, style="-", ok=False,
                           diagnosis="not checked: grading was interrupted")
    return rows, interrupted


def _cell(value):
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "NO"
    return str(value)


def table(rows: list[dict], width: int = 72) -> list[str]:
    """The rows as text lines for the screen (the diagnosis cut at ``width`` characters)."""
    cells = [[_cell(r[k]) for k in FIELDS[:6]] for r in rows]
    for c in cells:
        if len(c[5]) > width:
            c[5] = c[5][:width - 3] + "..."
    widths = [max(len(h), *(len(c[n]) for c in cells)) for n, h in enumerate(_HEADERS)]
    line = "  ".join(f"{h:<{w}}" for h, w in zip(_HEADERS, widths, strict=True))
    out = [line.rstrip(), "-" * len(line.rstrip())]
    out += ["  ".join(f"{v:<{w}}" for v, w in zip(c, widths, strict=True)).rstrip()
            for c in cells]
    ok = sum(r["ok"] for r in rows)
    out.append(f"{ok} of {len(rows)} submissions agree")
    return out


def write_csv(rows: list[dict], path: str) -> None:
    """The rows as CSV (a header of :data:`FIELDS`; empty cells for "not applicable")."""
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=FIELDS)
        writer.writeheader()
        writer.writerows(rows)


def write_json(rows: list[dict], path: str) -> None:
    """The rows as a JSON list of objects (keys :data:`FIELDS`; null for "not applicable")."""
    with open(path, "w", encoding="utf-8") as f:
        json.dump(rows, f, indent=1)
        f.write("\n")
