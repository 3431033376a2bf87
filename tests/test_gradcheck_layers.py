"""The checker on stacked and bidirectional models: rows per layer, direction and gate."""
import numpy as np
import pytest

import lstm_ag
from lstm_ag.gradcheck.__main__ import main as gradcheck_main
from lstm_ag.params import init_params

STRUCTURES = [(2, False), (1, True), (3, True)]


def problem(num_layers, bidirectional, T=4, B=2, D=2, H=3, O=1, seed=0):
    rng = np.random.default_rng(seed)
    params = init_params(D, H, O, num_layers=num_layers, bidirectional=bidirectional,
                         seed=seed)
    return params, rng.standard_normal((T, B, D)), rng.standard_normal((T, B, O))


@pytest.mark.parametrize("num_layers, bidirectional", STRUCTURES)
@pytest.mark.parametrize("upstream", [None, "last", "all"])
def test_no_false_alarm_on_the_librarys_backward(num_layers, bidirectional, upstream):
    params, xs, ys = problem(num_layers, bidirectional)
    report = lstm_ag.check_gradients(params, xs, ys if upstream is None else None,
                                     upstream=upstream, fd_samples=3)
    assert report.ok, str(report)
    names = {r.name for r in report.rows}
    assert f"L{num_layers - 1}.dWh[f]" in names and "L0.dWx[i]" in names
    assert ("L0.reverse.db[o]" in names) == bidirectional
    assert len(report.rows) == num_layers * (2 if bidirectional else 1) * 12 + \
        (2 if upstream is None else 0)


@pytest.mark.parametrize("method", lstm_ag.METHODS)
def test_every_method_passes_as_a_users_backward(method):
    params, xs, ys = problem(2, True, seed=1)
    report = lstm_ag.check_gradients(
        params, xs, ys, lambda p, x, y: lstm_ag.value_and_grad(p, x, y, method=method),
        fd_samples=2)
    assert report.ok, str(report)


def _with_mistake(path, key, gate, factor):
    def backward(p, x, y):
        loss, grads = lstm_ag.value_and_grad(p, x, y, method="bptt")
        node = grads
        for part in path:
            node = node[part]
        H = p["Wh"].shape[0]
        k = "ifgo".index(gate)
        node[key][..., k * H:(k + 1) * H] *= factor
        return loss, grads
    return backward


@pytest.mark.parametrize("path, key, gate, row, place", [
    (("layers", 0, "reverse"), "Wh", "f", "L1.reverse.dWh", "layer 1, reverse direction"),
    (("reverse",), "b", "g", "L0.reverse.db", "layer 0, reverse direction"),
    (("layers", 1), "Wx", "o", "L2.dWx", "layer 2, forward direction"),
])
def test_a_mistake_is_named_by_layer_direction_and_gate(path, key, gate, row, place):
    params, xs, ys = problem(3, True, seed=2)
    report = lstm_ag.check_gradients(params, xs, ys, _with_mistake(path, key, gate, 1.001),
                                     fd_samples=2)
    assert not report.ok
    assert report.worst[:2] == (row, gate)
    assert place in report.diagnosis[0]
    wrong = {r.name for r in report.bad_rows or report.rows if not r.ok}
    assert f"{row}[{gate}]" in wrong
    prefix = row.rsplit(".d", 1)[0] + ": "          # the one-layer diagnosis of that place
    assert any(s.startswith(prefix) for s in report.diagnosis[1:]), report.diagnosis


def test_a_mistake_in_an_upper_layer_is_located_above_what_it_spoils():
    params, xs, ys = problem(2, False, seed=3)

    def backward(p, x, y):          # layer 1 passes down twice the gradient of its input
        from lstm_ag.bptt import cached_runner, lstm_backward, readout_mse_backward
        from lstm_ag.stack import run_layers
        caches = []
        h0 = [np.zeros((x.shape[1], 3))] * 2
        hs, _, _ = run_layers(p, x, h0, h0, None, cached_runner(caches))
        loss, dhs, dWy, dby = readout_mse_backward(hs, p["Wy"], p["by"], y)
        top = lstm_backward(dhs, caches[1])
        bottom = lstm_backward(2 * top["xs"], caches[0], inputs=False)
        grads = {k: bottom[k] for k in ("Wx", "Wh", "b")}
        grads["layers"] = [{k: top[k] for k in ("Wx", "Wh", "b")}]
        grads.update(Wy=dWy, by=dby)
        return loss, grads
    report = lstm_ag.check_gradients(params, xs, ys, backward, fd_samples=2)
    assert not report.ok
    assert "layer 0, forward direction" in report.diagnosis[0]
    assert all(r.ok for r in report.rows if r.name.startswith("L1."))
    assert any("2 times" in sentence for sentence in report.diagnosis), report.diagnosis


def test_other_layouts_refuse_a_stacked_model():
    params, xs, _ = problem(2, False)
    with pytest.raises(ValueError, match="layout='dict'"):
        lstm_ag.check_gradients(params, xs, upstream="all", layout="concat",
                                backward=lambda p, x, g: {})


def test_command_line_checks_a_stacked_bidirectional_model(capsys):
    assert gradcheck_main(["--layers", "2", "--bidirectional", "--steps", "3",
                           "--hidden-size", "3"]) == 0
    out = capsys.readouterr().out
    assert "layers=2 bidirectional" in out and "L1.reverse.dWh[f]" in out
