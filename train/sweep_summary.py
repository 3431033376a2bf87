"""The sweep's summary: each run's row (:func:`record`), the statistics over the seeds of each
setting (:func:`summarize`), and the summary as a text table, ``summary.json``,
``summary.csv`` and ``summary.png`` (:func:`format_table`, :func:`write_summary`,
:func:`plot_summary`). Apart from its ``"session"`` and ``"seconds"`` entries a summary
depends only on the runs' results.
"""
import csv
import io
import itertools
import json
import os

from .sweep_plan import EXIT_INTERRUPTED, EXIT_TERMINATED, value_text


def record(run, metrics, code=0, error=None):
    """A run's row of the summary, from its metrics.json (None when it has none)."""
    row = {"seed": run.seed, "dir": run.label, "status": "failed", "error": error,
           "val_mse": None, "test_mse": None, "baseline": None, "beat": None, "seconds": None}
    if metrics is not None:
        row["seconds"] = metrics.get("seconds")
    if code in (EXIT_INTERRUPTED, EXIT_TERMINATED):
        row["status"] = "interrupted"
    elif metrics is not None and metrics.get("status") == "diverged":
        row["error"] = metrics.get("message") or error
    elif code == 0 and metrics is not None and metrics.get("status") == "done":
        row["status"], row["error"] = "done", None
        if run.config.task == "series":
            test = metrics["test"]
            row.update(val_mse=metrics["validation"]["mse"], test_mse=test["mse"],
                       baseline=test["ar"]["mse"])
            row["beat"] = row["test_mse"] < row["baseline"]
        else:
            patience = metrics["config"].get("patience")
            row.update(val_mse=metrics["best_val_mse"] if patience else metrics["val_mse"],
                       baseline=metrics["baseline_mse"])
            row["beat"] = row["baseline"] >= 10 * row["val_mse"]
    elif row["error"] is None:
        row["error"] = f"exit status {code}" if code is not None else "no result"
    return row


def _stats(values):
    import numpy as np
    if not values:
        return None
    array = np.array(values, dtype=np.float64)
    return {"mean": float(np.mean(array)),
            "std": float(np.std(array, ddof=1)) if len(array) > 1 else None,
            "min": float(np.min(array)), "max": float(np.max(array))}


def summarize(runs: list, rows: dict, *, grid: dict, fixed: dict, seeds: int) -> dict:
    """The sweep's summary: a JSON-ready dict.

    - runs: the :class:`train.sweep_plan.Run` list in the sweep's order; rows:
      ``{label: row}`` (each run's result, :func:`record`); grid, fixed: the grid and the
      fixed trainer settings; seeds: seeds per setting.
    Per setting (in the grid's order): ``setting``, ``name``, ``runs``, ``done``, ``failed``,
    ``val_mse`` (and for series ``test_mse``) as ``{"mean", "std", "min", "max"}`` over the
    seeds done (std with n - 1; None for one seed), ``baseline`` (the mean of the seeds' own),
    ``beat`` (seeds that beat it, see ``beat_rule``), ``seconds`` (mean training time of a
    run), and ``seeds``: each run's row (seed, dir, status, error, val_mse, test_mse, baseline,
    beat, seconds).
    """
    task = runs[0].config.task
    series = task == "series"
    settings = []
    for name, group in itertools.groupby(runs, key=lambda run: run.name):
        group = list(group)
        table = [rows[run.label] for run in group]
        done = [row for row in table if row["status"] == "done"]
        seconds = [row["seconds"] for row in table if row["seconds"] is not None]
        entry = {"setting": group[0].setting, "name": name, "runs": len(table),
                 "done": len(done), "failed": len(table) - len(done),
                 "val_mse": _stats([row["val_mse"] for row in done])}
        if series:
            entry["test_mse"] = _stats([row["test_mse"] for row in done])
        baselines = [row["baseline"] for row in done]
        entry["baseline"] = sum(baselines) / len(baselines) if baselines else None
        entry["beat"] = sum(bool(row["beat"]) for row in done)
        entry["seconds"] = sum(seconds) / len(seconds) if seconds else None
        entry["seeds"] = table
        settings.append(entry)
    return {"task": task,
            "metric": "validation MSE in data units" if series else
                      "validation MSE (the best evaluation's with --patience)",
            "baseline": "AR(p), test MSE" if series else
                        "the task's naive baseline, validation MSE",
            "beat_rule": "test MSE < AR(p)'s" if series else "baseline MSE >= 10 x validation MSE",
            "grid": grid, "fixed": fixed, "seeds": list(range(seeds)),
            "runs": sum(entry["runs"] for entry in settings),
            "done": sum(entry["done"] for entry in settings),
            "failed": sum(entry["failed"] for entry in settings),
            "settings": settings}


def _number(value, spec=".3e"):
    return "-" if value is None else format(value, spec)


def format_table(summary: dict) -> str:
    """The summary as a text table, one line per setting (and one per failed run)."""
    series = summary["task"] == "series"
    names = [entry["name"] or "(defaults)" for entry in summary["settings"]]
    width = max([len("setting")] + [len(name) for name in names])
    head = (f"{'setting':{width}s}  {'done':>5s}  {'val mean':>9s}  {'val std':>9s}  "
            f"{'val min':>9s}  {'val max':>9s}")
    head += (f"  {'test mean':>9s}  {'test std':>9s}  {'AR(p)':>9s}  {'<AR':>4s}" if series
             else f"  {'baseline':>9s}  {'10x':>4s}")
    head += f"  {'s/run':>6s}"
    lines = [head]
    for name, entry in zip(names, summary["settings"], strict=True):
        val = entry["val_mse"] or {}
        line = (f"{name:{width}s}  {entry['done']:>2d}/{entry['runs']:<2d}  "
                + "  ".join(f"{_number(val.get(key)):>9s}" for key in
                            ("mean", "std", "min", "max")))
        if series:
            test = entry["test_mse"] or {}
            line += (f"  {_number(test.get('mean')):>9s}  {_number(test.get('std')):>9s}"
                     f"  {_number(entry['baseline']):>9s}  {entry['beat']:>4d}")
        else:
            line += f"  {_number(entry['baseline']):>9s}  {entry['beat']:>4d}"
        line += f"  {_number(entry['seconds'], '.2f'):>6s}"
        lines.append(line)
    for entry in summary["settings"]:
        for row in entry["seeds"]:
            if row["status"] != "done":
                lines.append(f"failed: {row['dir']}: {row['error']}")
    return "\n".join(lines)


def _csv(summary):
    series = summary["task"] == "series"
    keys = list(summary["grid"])
    columns = [*keys, "runs", "done", "failed"]
    metrics = ["val_mse", "test_mse"] if series else ["val_mse"]
    for metric in metrics:
        columns += [f"{metric}_{stat}" for stat in ("mean", "std", "min", "max")]
    columns += ["baseline", "beat", "seconds"]
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(columns)
    for entry in summary["settings"]:
        row = [value_text(entry["setting"][key]) for key in keys]
        row += [entry["runs"], entry["done"], entry["failed"]]
        for metric in metrics:
            stats = entry[metric] or {}
            row += [stats.get(stat) for stat in ("mean", "std", "min", "max")]
        row += [entry["baseline"], entry["beat"], entry["seconds"]]
        writer.writerow(["" if value is None else repr(value) if isinstance(value, float)
                         else value for value in row])
    return text.getvalue()


def write_summary(summary: dict, out: str) -> list:
    """Write ``out/summary.json`` and ``out/summary.csv``, each atomically. Returns the paths."""
    import lstm_ag
    paths = []
    for name, text in (("summary.json", json.dumps(summary, indent=1) + "\n"),
                       ("summary.csv", _csv(summary))):
        path = os.path.join(out, name)
        lstm_ag.atomic_write(path, lambda file, text=text: file.write(text), mode="w")
        paths.append(path)
    return paths


def plot_summary(summary: dict, path: str) -> str:
    """Draw each setting's metric, one point per seed, its mean and the baseline; save it to
    ``path`` (a ``.png``, atomically). Series: validation and test side by side (the test
    beside AR(p)). Returns ``path``."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    import lstm_ag
    series = summary["task"] == "series"
    panels = [("val_mse", "validation MSE (data units)" if series else "validation MSE")]
    if series:
        panels.append(("test_mse", "test MSE (data units)"))
    settings = summary["settings"]
    names = [entry["name"] or "(defaults)" for entry in settings]
    fig, axes = plt.subplots(1, len(panels), squeeze=False, constrained_layout=True,
                             figsize=(len(panels) * max(5.0, 1.1 * len(settings) + 2.5), 4.8))
    for ax, (key, title) in zip(axes[0], panels, strict=True):
        with_baseline = key == ("test_mse" if series else "val_mse")
        for i, entry in enumerate(settings):
            rows = [row for row in entry["seeds"] if row["status"] == "done"]
            offsets = np.linspace(-0.2, 0.2, len(rows)) if len(rows) > 1 else np.zeros(len(rows))
            first = i == 0
            ax.plot(i + offsets, [row[key] for row in rows], "o", color="C0", alpha=0.75,
                    label="one seed" if first else None)
            if entry[key] is not None:
                ax.hlines(entry[key]["mean"], i - 0.3, i + 0.3, color="C3",
                          label="mean over seeds" if first else None)
            if with_baseline and rows:
                ax.plot(i + offsets, [row["baseline"] for row in rows], "_", color="k",
                        markersize=12, label=("AR(p)" if series else "baseline")
                        if first else None)
            failed = entry["failed"]
            if failed:
                ax.annotate(f"{failed} failed", (i, 0.02), xycoords=("data", "axes fraction"),
                            ha="center", color="C3", fontsize="small")
        ax.set_yscale("log")
        ax.set_xticks(range(len(settings)), names, rotation=25, ha="right")
        ax.set_xlim(-0.6, len(settings) - 0.4)
        ax.set(ylabel="MSE", title=f"{summary['task']}: {title}, {len(summary['seeds'])} seeds")
        ax.legend(fontsize="small")
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    lstm_ag.atomic_write(path, lambda file: file.write(buffer.getvalue()))
    return path
