"""Full-batch L-BFGS (``config.optimizer = "lbfgs"``): scipy's L-BFGS-B over the whole
training set, one iteration a step, with the bookkeeping of :mod:`train.bookkeeping`."""
import math

import numpy as np

import lstm_ag

from .bookkeeping import Run, State, evaluation_due

__all__ = ["fit_lbfgs"]


def fit_lbfgs(state: State, task, config, run: Run, callback):
    """Train from ``state`` (a :class:`State` without velocity) up to ``config.steps``
    iterations of scipy.optimize.minimize (method L-BFGS-B), the parameter dict made one
    vector by ``autograd.misc.flatten``; ``run`` keeps the books, ``callback`` as
    :func:`train.fit`'s. Returns the run's :class:`train.loop.FitResult`."""
    from autograd.misc import flatten as to_vector
    from scipy.optimize import minimize

    keys = list(state.params)
    x0, from_vector = to_vector(state.params)
    last = {"loss": math.nan, "norm": math.nan}

    class NonFinite(Exception):
        pass

    def objective(x):
        with np.errstate(all="ignore"):
            try:
                loss, grads = lstm_ag.value_and_grad(from_vector(x), task.train_x, task.train_y,
                                                     method=config.method, mask=task.mask)
            except OverflowError:          # lstm_ag names an overflow: the loss, say
                raise NonFinite("the loss") from None
        loss = float(loss)
        g, _ = to_vector({k: grads[k] for k in keys})
        norm = float(np.linalg.norm(g))
        if not (math.isfinite(loss) and math.isfinite(norm)):
            raise NonFinite("the loss" if not math.isfinite(loss) else "the gradient norm")
        last.update(loss=loss, norm=norm)
        return loss, np.asarray(g, dtype=np.float64)

    def on_iteration(xk):
        nonlocal state
        state = State(state.step + 1, from_vector(np.array(xk)), None)
        run.record(last["loss"], last["norm"])
        if callback is not None:
            callback(state.step, state.params, {"loss": last["loss"], "grad_norm": last["norm"]})
        evaluation = evaluation_due(state.step, config)
        if evaluation and not run.evaluate_and_save(state):
            raise NonFinite("the validation MSE")
        if state.step >= config.steps or (evaluation and run.patience_spent()):
            raise StopIteration

    try:
        run.save(state)                   # a checkpoint from the start; metrics: running
        result = minimize(objective, x0, jac=True, method="L-BFGS-B", callback=on_iteration,
                          options={"maxiter": config.steps - state.step,
                                   "maxfun": 20 * config.steps, "ftol": 0.0, "gtol": 1e-12})
        stopped = None if state.step >= config.steps or run.patience_spent() \
            else str(result.message)
    except StopIteration:
        stopped = None
    except NonFinite as err:
        return run.diverged(state, str(err))
    except KeyboardInterrupt:
        return run.interrupted(state)
    result = run.done(state)
    if stopped and result.status == "done":
        result.message = f"L-BFGS stopped at iteration {state.step}: {stopped}"
    return result
