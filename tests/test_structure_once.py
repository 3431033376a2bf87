"""Every public call computes ``structure(params)`` once, where it validates, and hands it down
(issue 21): counted by replacing the function in every lstm_ag module that holds it."""
import sys

import numpy as np
import pytest

import lstm_ag
import lstm_ag.params


@pytest.fixture
def calls(monkeypatch):
    """A list that grows by one at every call of lstm_ag.params.structure, from any module."""
    real, seen = lstm_ag.params.structure, []

    def counted(params):
        seen.append(1)
        return real(params)

    for name, module in list(sys.modules.items()):
        if name.startswith("lstm_ag") and getattr(module, "structure", None) is real:
            monkeypatch.setattr(module, "structure", counted)
    return seen


SHAPES = {"one layer": {}, "two layers": {"num_layers": 2},
          "two layers, bidirectional": {"num_layers": 2, "bidirectional": True}}


CALLS = ["fast", "bptt", "autograd", "lstm_forward", "predict", "mse", "forward_cache",
         "model.bptt", "forecast"]


@pytest.mark.parametrize(("shape", "call"), [
    (shape, call) for shape in SHAPES for call in CALLS
    if not (call == "forecast" and SHAPES[shape].get("bidirectional"))])   # forecast refuses it
def test_structure_is_computed_once_per_public_call(calls, shape, call):
    params = lstm_ag.init_params(2, 3, 2, seed=1, **SHAPES[shape])
    rng = np.random.default_rng(0)
    xs, ys = rng.standard_normal((4, 2, 2)), rng.standard_normal((4, 2, 2))
    run = {"lstm_forward": lambda: lstm_ag.lstm_forward(params, xs),
           "predict": lambda: lstm_ag.predict(params, xs),
           "mse": lambda: lstm_ag.mse(params, xs, ys),
           "forward_cache": lambda: lstm_ag.forward_cache(params, xs),
           "model.bptt": lambda: lstm_ag.model.bptt(params, xs, ys),
           "forecast": lambda: lstm_ag.forecast(params, xs, 3)}.get(
        call, lambda: lstm_ag.value_and_grad(params, xs, ys, method=call, return_state=True))
    run()
    assert len(calls) == 1, f"{call} on {shape}: structure() ran {len(calls)} times"
