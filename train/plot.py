"""``--plot``: one figure of a trained run (needs matplotlib, the ``plot`` extra); and
:func:`plot_forecast`, the picture of ``lstm-ag-train forecast --plot``.

Four panels: the loss curves against the baseline (the best step, the one an early stop
keeps, marked); the prediction against the truth on one validation sequence (a series: the
whole series in data units against its dates, the split shaded, the one-step predictions);
the hidden states h_t and the cell states c_t of that sequence over time (what notebook 004
plots), as heat maps, one row per unit.
"""
import numpy as np

import lstm_ag

from .data import Task

__all__ = ["states", "plot_run", "plot_forecast"]


def states(params: dict, xs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every hidden and cell state of one sequence, from the library's forward with its cache
    (of the top layer's forward direction, for a stacked or bidirectional model).

    - params: the model's parameters; xs: one sequence ``(T, D)``.
    Returns ``(hs, cs)``, each ``(T, H)``.
    """
    cache = lstm_ag.forward_cache(params, xs)             # h, c: (T + 1, 1, H), row 0 = zeros
    return cache.h[1:, 0], cache.c[1:, 0]


def plot_run(params: dict, task: Task, history: list, path: str, *, index: int = 0) -> str:
    """Draw the run's figure and save it to ``path`` (a ``.png``).

    - params: trained parameters; task: the :class:`train.data.Task`.
    - history: the evaluation rows of :func:`train.fit` (dicts with step, train_loss, val_mse).
    - index: which validation sequence to show.
    Returns ``path``.
    """
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xs, ys = task.val_x[:, index], task.val_y[:, index]
    with np.errstate(all="ignore"):
        pred = lstm_ag.predict(params, xs)
        hs, cs = states(params, xs)
    t = np.arange(len(xs))
    fig, axes = plt.subplots(2, 2, figsize=(12, 8), constrained_layout=True)

    ax = axes[0, 0]
    steps = [row["step"] for row in history]
    column = lambda key: [np.nan if row[key] is None else row[key] for row in history]  # noqa: E731
    ax.semilogy(steps, column("train_loss"), ".-", label="train loss (mean since last point)")
    ax.semilogy(steps, column("val_mse"), ".-", label="validation MSE")
    ax.axhline(task.baseline_mse, color="k", ls="--", label=f"baseline: {task.baseline}")
    scored = [row for row in history if row["val_mse"] is not None]
    if scored:
        best = min(scored, key=lambda row: row["val_mse"])["step"]
        ax.axvline(best, color="C3", ls=":", label=f"best step {best} (the model kept)")
    ax.set(xlabel="step", ylabel="MSE" + (" (scaled units: a progress figure)"
                                          if task.name == "series" else ""),
           title=f"{task.name}: loss")
    ax.legend()

    ax = axes[0, 1]
    if task.name == "series":
        _series_axes(ax, params, task)
    elif task.name == "adding":
        ax.plot(t, xs[:, 0], ".", color="0.6", label="values")
        marked = np.flatnonzero(xs[:, 1])
        ax.plot(t[marked], xs[marked, 0], "o", color="C3", label="marked values")
        ax.plot(t, ys[:, 0], "k--", label=f"target (sum) {ys[-1, 0]:.3f}")
        ax.plot(t, pred[:, 0], color="C0", label=f"prediction, scored at the end: "
                                                  f"{pred[-1, 0]:.3f}")
    else:
        ax.plot(t, xs[:, 0], ".", color="0.6", label="input")
        ax.plot(t, ys[:, 0], "k-", lw=1, label="truth (next value)")
        ax.plot(t, pred[:, 0], "C0--", label="prediction")
        if task.mask is not None and task.mask[0] == 0:
            ax.axvspan(-0.5, np.argmax(task.mask > 0) - 0.5, color="0.9", label="not scored")
    if task.name == "series":
        ax.set(title="the series, in data units: the split and the one-step predictions")
    else:
        ax.set(xlabel="t", title=f"validation sequence {index}: prediction vs truth")
        ax.legend(fontsize="small")

    num_layers, dirs = lstm_ag.structure(params)
    which = "" if (num_layers, dirs) == (1, 1) else \
        f" (layer {num_layers - 1}{', forward direction' if dirs == 2 else ''})"
    for ax, values, name in ((axes[1, 0], hs, f"hidden state h_t{which}"),
                             (axes[1, 1], cs, f"cell state c_t{which}")):
        limit = float(np.max(np.abs(values))) or 1.0
        image = ax.imshow(values.T, aspect="auto", cmap="RdBu_r", vmin=-limit, vmax=limit,
                          interpolation="nearest")
        ax.set(xlabel="t", ylabel="unit", title=f"{name} over time")
        fig.colorbar(image, ax=ax)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _times(task, n):
    """The x values of the first ``n`` points (and beyond the series): dates, else indices."""
    from .split import dates_of
    dates = dates_of(task.spec.get("dates", ""), n)
    return (np.arange(n), "index") if dates is None else (dates.astype("datetime64[D]"),
                                                          "date")


def _series_axes(ax, params, task, extra=0):
    """The series in data units against its dates, the split shaded, and the LSTM's one-step
    predictions over the validation and test parts. Returns the x values of the series and
    ``extra`` points after it."""
    from .series import one_step
    values, (n1, n2) = task.values, task.bounds
    x, label = _times(task, len(values) + extra)
    scored = np.arange(n1, len(values))
    ax.axvspan(x[n1], x[n2], color="0.93", label="validation part")
    ax.axvspan(x[n2], x[len(values) - 1], color="0.85", label="test part")
    ax.plot(x[:len(values)], values, "k-", lw=1, label="series (data units)")
    ax.plot(x[scored], one_step(params, task, scored), "C0--", lw=1,
            label="LSTM, one step ahead")
    ax.set(xlabel=label, ylabel=task.spec.get("column") or "value")
    ax.legend(fontsize="small")
    return x


def plot_forecast(params: dict, task, forecast: np.ndarray, origin: int, path: str, *,
                  interval=None) -> str:
    """A series in data units against its dates (the split shaded), the one-step predictions
    over its validation and test parts and a multi-step forecast with its interval; saved to
    ``path`` (a ``.png``).

    - params: trained parameters; task: a :class:`train.series.SeriesTask`.
    - forecast: the forecast levels ``(K,)``; origin: the index of its first value.
    - interval: None, or ``(low (K,), high (K,))`` around the forecast.
    Returns ``path``.
    """
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(12, 5), constrained_layout=True)
    extra = max(0, origin + len(forecast) - len(task.values))
    x = _series_axes(ax, params, task, extra)
    steps = x[origin:origin + len(forecast)]
    ax.plot(steps, forecast, "C3.-", label=f"LSTM, {len(forecast)} steps ahead")
    if interval is not None:
        ax.fill_between(steps, interval[0], interval[1], color="C3", alpha=0.2,
                        label="90% interval (validation errors)")
    name = task.spec.get("source") or "series"
    ax.set(title=f"{name}: the split, one-step predictions and the forecast")
    ax.legend(fontsize="small")
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
