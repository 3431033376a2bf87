"""The fuzz of issue 22's vectors (signals, crafted checkpoints, overflow inputs, sweeps,
scheduler peers), counting per vector: cases, clear outcomes, silent ones, tracebacks, hangs,
data lost. Not collected by pytest (no ``test_`` prefix: it runs for minutes); run it from
the repository's root::

    python tests/fuzz_reliability.py [VECTOR ...] [--cases N] [--seed S]

Each case's outcome is one of: ``clear`` (a result, or a named error / exit status with one
line), ``silent`` (a wrong or unexplained result: killed without a word, inf returned),
``traceback``, ``hang`` (no end within the time limit) and, counted apart, ``lost`` (after
the stop, the resumed run's files disagree or miss rows an uninterrupted run has).
"""
import argparse
import collections
import contextlib
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
SMALL = ["sine", "--steps", "300", "--hidden", "6", "--batch", "8", "--seq-len", "10",
         "--eval-every", "25", "--method", "autograd"]
EVAL_STEPS = list(range(25, 301, 25))


def _trainer(argv, **kwargs):
    return subprocess.Popen([sys.executable, "-m", "train", *argv], cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kwargs)


def _files_agree(out):
    """None when metrics.json and model.npz agree (or neither exists), else why not."""
    from train.loop import load_checkpoint
    if not (out / "model.npz").exists():
        return None
    step = load_checkpoint(out / "model.npz").progress.step
    metrics = json.loads((out / "metrics.json").read_text())
    if metrics["step"] != step:
        return f"metrics step {metrics['step']}, checkpoint {step}"
    return None


def _resume_complete(out, count):
    """Resume to the end; None when the history is an uninterrupted run's, else why not."""
    if not (out / "model.npz").exists():
        return None
    done = subprocess.run([sys.executable, "-m", "train", "--out", str(out), "--resume"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    if done.returncode != 0 or "Traceback" in done.stderr:
        count["traceback" if "Traceback" in done.stderr else "lost"] += 1
        return f"resume exit {done.returncode}: {done.stderr[-200:]}"
    steps = [row["step"] for row in json.loads((out / "metrics.json").read_text())["history"]]
    return None if steps == EVAL_STEPS else f"history {steps}"


def signals(cases, rng, work, kill=False, early=False):
    """SIGINT/SIGTERM (or SIGKILL) to one trainer at a random time; then resume."""
    count, notes = collections.Counter(), []
    for case in range(cases):
        out = work / f"sig{case}"
        signum = signal.SIGKILL if kill else rng.choice([signal.SIGINT, signal.SIGTERM])
        delay = rng.uniform(0, 0.15) if early else rng.uniform(0, 3.0)
        process = _trainer([*SMALL, "--out", str(out)])
        time.sleep(delay)
        process.send_signal(signum)
        try:
            _, err = process.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            process.kill()
            _, err = process.communicate()
            count["hang"] += 1
            continue
        count["cases"] += 1
        code = process.returncode
        clear = code in (130, 143, 0) and "Traceback" not in err
        if not clear and not kill:             # how late in start-up a signal still hurt
            latest = count["latest unclear delay (ms)"]
            count["latest unclear delay (ms)"] = max(latest, round(delay * 1000))
        if "Traceback" in err:
            count["traceback"] += 1
            notes.append(f"{signum.name} at {delay:.3f} s: {err[-300:]}")
        elif kill:
            count["clear"] += 1                    # SIGKILL is never clear; files are judged
            if _files_agree(out):
                count["lagging files (repaired on resume)"] += 1
        elif code in (130, 143, 0) and sum("interrupted" in line
                                           for line in err.splitlines()) <= 1:
            count["clear"] += 1
            count[f"exit {code}"] += 1
        else:
            count["silent"] += 1
            notes.append(f"{signum.name} at {delay:.3f} s: exit {code}, {err[-200:]!r}")
        if not kill:
            why = _files_agree(out)
            if why:
                count["lost"] += 1
                notes.append(f"files disagree: {why}")
        why = _resume_complete(out, count)
        if why:
            count["lost"] += 1
            notes.append(f"{signum.name} at {delay:.3f} s: {why}")
        shutil.rmtree(out, ignore_errors=True)
    return count, notes


def checkpoints(cases, rng, work):
    """Crafted trainer checkpoints: versions, unknown/missing fields, wrong types, big arrays."""
    import lstm_ag
    from train.loop import load_checkpoint
    count, notes = collections.Counter(), []
    base = work / "ckpt"
    subprocess.run([sys.executable, "-m", "train", *SMALL[:1], "--steps", "10",
                    *SMALL[3:], "--quiet", "--out", str(base)], cwd=ROOT, check=True,
                   capture_output=True)
    params, meta = lstm_ag.load(base / "model.npz")
    junk = [None, "", "0.0.1", "99.0.0", 5, [1], {"a": 1}, np.zeros(3), 1e308, -1, "x" * 1000,
            np.zeros((2, 2), np.float32)]
    for case in range(cases):
        changed = dict(meta)
        for _ in range(rng.randint(1, 3)):
            what = rng.choice(["version", "unknown", "drop", "field", "config", "array"])
            if what == "version":
                changed["lstm_ag_version"] = rng.choice(junk[:5])
            elif what == "unknown":
                changed[rng.choice(["extra", "optimizer_state", "ema"])] = rng.choice(junk)
            elif what == "drop":
                changed.pop(rng.choice(list(changed)), None)
            elif what == "field":
                changed[rng.choice(list(meta))] = rng.choice(junk)
            elif what == "config":
                config = dict(meta["config"])
                config[rng.choice(list(config))] = rng.choice(junk)
                changed["config"] = config
            else:
                changed["velocity"] = {k: np.zeros(rng.choice([(1,), v.shape, (64, 64)]))
                                       for k, v in params.items()}
        path = work / f"c{case}.npz"
        try:
            lstm_ag.save(path, params, **{k: v for k, v in changed.items() if v is not None})
        except (TypeError, ValueError):
            count["not writable (refused by save)"] += 1
            continue
        count["cases"] += 1
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error")
                loaded = load_checkpoint(path)
        except lstm_ag.CheckpointError as err:
            count["clear"] += 1
            if str(path) not in str(err):
                count["silent"] += 1
                notes.append(f"error without the file: {err}")
        except Exception as err:
            count["traceback"] += 1
            notes.append(f"{type(err).__name__}: {err}")
        else:
            version = changed.get("lstm_ag_version")
            if version != lstm_ag.__version__ and loaded.progress.written_by != (version or ""):
                count["silent"] += 1
                notes.append(f"version {version!r} accepted without a note")
            else:
                count["clear"] += 1
                count["accepted (fields valid" + (", version said)" if version !=
                                                  lstm_ag.__version__ else ")")] += 1
        path.unlink(missing_ok=True)
    return count, notes


def overflow(cases, rng, work):
    """Finite inputs scaled by 10^100 .. 10^308 into every public function and method."""
    import lstm_ag
    count, notes = collections.Counter(), []
    functions = ["lstm_forward", "predict", "forecast", "mse", "fast", "bptt", "autograd"]
    for _ in range(cases):
        D = O = rng.randint(1, 2)
        H, T, B = rng.randint(1, 4), rng.randint(1, 5), rng.randint(1, 3)
        dtype = rng.choice([np.float64, np.float32])
        params = lstm_ag.init_params(D, H, O, seed=rng.randint(0, 99), dtype=dtype)
        data = np.random.default_rng(rng.randint(0, 2**16))
        xs, ys = data.standard_normal((T, B, D)), data.standard_normal((T, B, O))
        top = 38 if dtype == np.float32 else 308
        scale = 10.0 ** rng.uniform(top / 3, top)
        target = rng.choice(["targets", "xs", "Wx", "Wh", "b", "Wy", "by"])
        if target == "targets":
            ys = ys * scale
        elif target == "xs":
            xs = xs * scale
        else:
            params[target] = (params[target] * scale).astype(dtype)
        function = rng.choice(functions)
        count["cases"] += 1
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error")
                if function == "lstm_forward":
                    values = [lstm_ag.lstm_forward(params, xs)[0]]
                elif function == "predict":
                    values = [lstm_ag.predict(params, xs)]
                elif function == "forecast":
                    values = [lstm_ag.forecast(params, xs, 2)]
                elif function == "mse":
                    values = [lstm_ag.mse(params, xs, ys)]
                else:
                    loss, grads = lstm_ag.value_and_grad(params, xs, ys, method=function)
                    values = [loss, *grads.values()]
        except (ValueError, TypeError) as err:
            count["clear"] += 1
            count["named errors"] += 1
            if not any(word in str(err) for word in ("overflow", "params", "xs", "targets")):
                count["silent"] += 1
                notes.append(f"unnamed: {err}")
        except Exception as err:
            count["traceback"] += 1
            notes.append(f"{function} {target} x{scale:.1e}: {type(err).__name__}: {err}")
        else:
            if all(np.isfinite(np.asarray(v)).all() for v in values):
                count["clear"] += 1
                count["finite results"] += 1
            else:
                count["silent"] += 1
                notes.append(f"{function} {target} x{scale:.1e}: non-finite result")
    return count, notes


def sweeps(cases, rng, work):
    """A sweep stopped at a random time (SIGTERM, SIGINT or SIGKILL to it, or SIGKILL to a
    worker); then the same command, which must finish every run."""
    count, notes = collections.Counter(), []
    argv = ["sweep", "sine", "--steps", "600", "--seq-len", "8", "--train-size", "32",
            "--batch", "8", "--eval-every", "20", "--method", "autograd", "--grid",
            "hidden=3,5", "--seeds", "2", "--jobs", "2"]
    for case in range(cases):
        out = work / f"sw{case}"
        how = rng.choice(["SIGTERM", "SIGINT", "SIGKILL", "worker"])
        process = _trainer([*argv, "--out", str(out)], start_new_session=True)
        time.sleep(rng.uniform(0.5, 6.0))
        if how == "worker":
            locks = sorted(out.glob("*/seed=*/.lock"))
            pid = int(locks[0].read_text() or 0) if locks else 0
            if pid and pid != process.pid:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        else:
            process.send_signal(getattr(signal, how))
        try:
            _, err = process.communicate(timeout=180)
        except subprocess.TimeoutExpired:
            count["hang"] += 1
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
            continue
        count["cases"] += 1
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                os.killpg(process.pid, 0)
                time.sleep(0.1)
            except ProcessLookupError:
                break
        else:
            count["workers left"] += 1
            os.killpg(process.pid, signal.SIGKILL)
        if "Traceback" in err:
            count["traceback"] += 1
            notes.append(f"{how}: {err[-300:]}")
        else:
            count["clear"] += 1
            count[f"{how}: exit {process.returncode}"] += 1
        done = subprocess.run([sys.executable, "-m", "train", *argv, "--out", str(out)],
                              cwd=ROOT, capture_output=True, text=True, timeout=300)
        failed_before = how == "worker" and process.returncode == 1
        summary = json.loads((out / "summary.json").read_text()) if (
            out / "summary.json").exists() else None
        if done.returncode not in (0, 1) or summary is None or "in use" in done.stderr:
            count["lost"] += 1
            notes.append(f"{how}: rerun exit {done.returncode}: {done.stderr[-300:]}")
        elif summary["failed"] and not failed_before:
            count["lost"] += 1
            notes.append(f"{how}: rerun has failed runs: {done.stdout[-300:]}")
        shutil.rmtree(out, ignore_errors=True)
    return count, notes


def schedulers(cases, rng, work):
    """--scheduler to a local server that says nothing, junk, a length then nothing, or HTTP."""
    count, notes = collections.Counter(), []
    for _ in range(cases):
        kind = rng.choice(["silent", "junk", "length", "close", "http"])
        server = socket.socket()
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        payload = {"silent": b"", "junk": bytes(rng.randrange(256) for _ in range(16)),
                   "length": rng.randint(1, 1000).to_bytes(8, sys.byteorder),
                   "close": None, "http": b"HTTP/1.1 400 Bad Request\r\n\r\n"}[kind]
        held = []

        def serve(server=server, payload=payload, held=held):
            with contextlib.suppress(OSError):
                while True:
                    conn, _ = server.accept()
                    if payload is None:
                        conn.close()
                    else:
                        held.append(conn)
                        conn.sendall(payload)
        threading.Thread(target=serve, daemon=True).start()
        started = time.monotonic()
        done = subprocess.run([sys.executable, "-m", "train", "sweep", "sine", "--steps", "4",
                               "--seeds", "1", "--timeout", "1", "--scheduler",
                               f"tcp://127.0.0.1:{server.getsockname()[1]}", "--out",
                               str(work / "sched")], cwd=ROOT, capture_output=True, text=True,
                              timeout=120)
        seconds = time.monotonic() - started
        server.close()
        for conn in held:
            conn.close()
        count["cases"] += 1
        if "Traceback" in done.stderr or "MemoryError" in done.stderr:
            count["traceback"] += 1
            notes.append(f"{kind}: {done.stderr[-300:]}")
        elif done.returncode == 2 and seconds < 30:
            count["clear"] += 1
        else:
            count["silent" if seconds < 30 else "hang"] += 1
            notes.append(f"{kind}: exit {done.returncode} after {seconds:.1f} s")
    return count, notes


VECTORS = {"signals": signals,
           "startup": lambda n, rng, work: signals(n, rng, work, early=True),
           "sigkill": lambda n, rng, work: signals(n, rng, work, kill=True),
           "checkpoints": checkpoints, "overflow": overflow, "sweeps": sweeps,
           "schedulers": schedulers}
DEFAULT_CASES = {"signals": 40, "startup": 40, "sigkill": 30, "checkpoints": 1500,
                 "overflow": 5000, "sweeps": 8, "schedulers": 20}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("vectors", nargs="*", default=list(VECTORS))
    parser.add_argument("--cases", type=int)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    for name in args.vectors:
        with tempfile.TemporaryDirectory(prefix=f"fuzz-{name}-") as work:
            started = time.monotonic()
            count, notes = VECTORS[name](args.cases or DEFAULT_CASES[name], rng, Path(work))
            print(f"{name}: " + ", ".join(f"{k} {v}" for k, v in sorted(count.items()))
                  + f" ({time.monotonic() - started:.0f} s)", flush=True)
            for note in notes[:8]:
                print(f"  {note}", flush=True)


if __name__ == "__main__":
    main()
