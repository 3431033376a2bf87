"""``--plot``: one figure of a trained run (needs matplotlib, the ``plot`` extra); and
:func:`plot_forecast`, the picture of ``lstm-ag-train forecast --plot``.

Four panels: the loss curves against the baseline; the prediction against the truth on one
validation sequence; the hidden states h_t and the cell states c_t of that sequence over time
(what notebook 004 plots), as heat maps, one row per unit.
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
    ax.set(xlabel="step", ylabel="MSE", title=f"{task.name}: loss")
    ax.legend()

    ax = axes[0, 1]
    if task.name == "adding":
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


def plot_forecast(params: dict, task, forecast: np.ndarray, origin: int, path: str) -> str:
    """A series' history, its test part, the one-step predictions over the test part and a
    multi-step forecast, in data units; saved to ``path`` (a ``.png``).

    - params: trained parameters; task: a :class:`train.series.SeriesTask`.
    - forecast: the forecast levels ``(K,)``; origin: the index of its first value.
    Returns ``path``.
    """
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .series import one_step

    values, (n1, n2) = task.values, task.bounds
    test = np.arange(n2, len(values))
    t = np.arange(len(values))
    fig, ax = plt.subplots(figsize=(12, 5), constrained_layout=True)
    ax.plot(t[:n2], values[:n2], color="0.5", lw=1, label="history (training, validation)")
    ax.plot(test, values[n2:], "k-", lw=1.2, label="test part (truth)")
    ax.plot(test, one_step(params, task, test), "C0--", lw=1,
            label="LSTM, one step ahead")
    steps = np.arange(origin, origin + len(forecast))
    ax.plot(steps, forecast, "C3.-", label=f"LSTM, {len(forecast)} steps ahead from {origin}")
    ax.axvline(n1 - 0.5, color="0.8", ls=":")
    ax.axvline(n2 - 0.5, color="0.8", ls=":")
    name = task.spec.get("source") or "series"
    ax.set(xlabel="index", ylabel=task.spec.get("column") or "value",
           title=f"{name}: test part and forecast (dotted: the split)")
    ax.legend(fontsize="small")
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
