"""SGD with momentum, Adam, global-norm clipping and decay, on cases computed by hand."""
import math

import numpy as np
import pytest
from numpy.testing import assert_allclose

from train.optim import (
    adam_update,
    clip_by_global_norm,
    global_norm,
    init_moments,
    init_velocity,
    learning_rate,
    momentum_update,
)


def _grads():
    # global norm = sqrt(3^2 + 4^2 + 0 + 12^2) = 13
    return {"W": np.array([[3.0, 4.0]]), "b": np.array([0.0, 12.0])}


def test_global_norm_by_hand():
    assert global_norm(_grads()) == pytest.approx(13.0)
    assert global_norm({"a": np.zeros(3)}) == 0.0
    assert math.isnan(global_norm({"a": np.array([1.0, np.nan])}))
    assert math.isinf(global_norm({"a": np.array([np.inf])}))


def test_clipping_scales_every_gradient_by_one_factor():
    grads = _grads()
    clipped, norm = clip_by_global_norm(grads, 6.5)                 # half of 13
    assert norm == pytest.approx(13.0)
    assert_allclose(clipped["W"], [[1.5, 2.0]])
    assert_allclose(clipped["b"], [0.0, 6.0])
    assert global_norm(clipped) == pytest.approx(6.5)
    assert_allclose(grads["W"], [[3.0, 4.0]])                       # inputs untouched


@pytest.mark.parametrize("max_norm", [13.0, 100.0, None, 0, math.inf])
def test_no_clipping_below_the_threshold_or_when_off(max_norm):
    clipped, norm = clip_by_global_norm(_grads(), max_norm)
    assert norm == pytest.approx(13.0)
    for key, g in _grads().items():
        assert np.array_equal(clipped[key], g)


def test_momentum_two_steps_by_hand():
    params = {"w": np.array([1.0, -2.0])}
    v = init_velocity(params)
    assert np.array_equal(v["w"], [0.0, 0.0])
    g = {"w": np.array([0.5, 1.0])}
    p1, v1 = momentum_update(params, g, v, lr=0.1, momentum=0.9)
    assert_allclose(v1["w"], [0.5, 1.0])                            # v = 0.9*0 + g
    assert_allclose(p1["w"], [0.95, -2.1])                          # p = p - 0.1*v
    p2, v2 = momentum_update(p1, g, v1, lr=0.1, momentum=0.9)
    assert_allclose(v2["w"], [0.95, 1.9])                           # 0.9*[.5, 1] + [.5, 1]
    assert_allclose(p2["w"], [0.855, -2.29])
    assert_allclose(params["w"], [1.0, -2.0]) and np.array_equal(v["w"], [0, 0])   # pure


def test_one_step_as_fit_takes_it_clips_then_decays_then_steps():
    params = {"W": np.ones((1, 2)), "b": np.zeros(2)}
    vel = {"W": np.array([[1.0, 0.0]]), "b": np.array([0.0, 2.0])}
    grads, norm = clip_by_global_norm(_grads(), 1.3)
    lr = learning_rate(0.2, 3, 1 / 3)
    new_p, new_v = momentum_update(params, grads, vel, lr=lr, momentum=0.5)
    # clip: g * 1.3/13 = g / 10; lr = 0.2 / (1 + 3/3) = 0.1
    assert norm == pytest.approx(13.0) and lr == pytest.approx(0.1)
    assert_allclose(new_v["W"], [[0.5 + 0.3, 0.0 + 0.4]])
    assert_allclose(new_v["b"], [0.0, 1.0 + 1.2])
    assert_allclose(new_p["W"], [[1 - 0.08, 1 - 0.04]])
    assert_allclose(new_p["b"], [0.0, -0.22])


def test_float32_stays_float32():
    params = {"w": np.ones(3, np.float32)}
    grads, _ = clip_by_global_norm({"w": np.full(3, 10, np.float32)}, 1.0)
    p, v = momentum_update(params, grads, init_velocity(params), lr=0.1, momentum=0.9)
    assert grads["w"].dtype == p["w"].dtype == v["w"].dtype == np.float32


def test_learning_rate_schedule_depends_on_the_step_only():
    assert learning_rate(0.5, 0) == 0.5
    assert learning_rate(0.5, 100, 0.0) == 0.5
    assert learning_rate(0.5, 9, 1 / 9) == pytest.approx(0.25)


@pytest.mark.parametrize("call, match", [
    (lambda: learning_rate(0.0, 1), "lr must be > 0, got 0.0"),
    (lambda: learning_rate(0.1, 1, -1), "decay must be >= 0, got -1"),
    (lambda: clip_by_global_norm(_grads(), -1.0), "max_norm must be >= 0"),
    (lambda: momentum_update({"w": np.ones(1)}, {"w": np.ones(1)}, {"w": np.ones(1)},
                             lr=0.1, momentum=1.0), r"momentum must be in \[0, 1\), got 1.0"),
    (lambda: momentum_update({"w": np.ones(1)}, {"x": np.ones(1)}, {"w": np.ones(1)},
                             lr=0.1, momentum=0.5), "keys of params"),
])
def test_bad_arguments_are_named(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_adam_two_steps_by_hand():
    params = {"w": np.array([1.0, -2.0])}
    moments = init_moments(params)
    assert np.array_equal(moments["m"]["w"], [0, 0]) and np.array_equal(moments["v"]["w"], [0, 0])
    g1, g2 = {"w": np.array([0.5, -1.0])}, {"w": np.array([-1.0, 2.0])}
    p1, m1 = adam_update(params, g1, moments, lr=0.1, step=0)
    assert_allclose(m1["m"]["w"], [0.05, -0.1])                      # 0.1 * g
    assert_allclose(m1["v"]["w"], [0.00025, 0.001])                  # 0.001 * g**2
    # t = 1: m_hat = g, v_hat = g**2, so the step is lr * sign(g) (less eps)
    assert_allclose(p1["w"], [1.0 - 0.1 * 0.5 / (0.5 + 1e-8), -2.0 + 0.1 * 1.0 / (1.0 + 1e-8)],
                    rtol=1e-15)
    p2, m2 = adam_update(p1, g2, m1, lr=0.1, step=1)
    m = np.array([0.9 * 0.05 + 0.1 * -1.0, 0.9 * -0.1 + 0.1 * 2.0])      # [-0.055, 0.11]
    v = np.array([0.999 * 0.00025 + 0.001 * 1.0, 0.999 * 0.001 + 0.001 * 4.0])
    assert_allclose(m2["m"]["w"], m) and assert_allclose(m2["v"]["w"], v)
    m_hat, v_hat = m / (1 - 0.9 ** 2), v / (1 - 0.999 ** 2)
    assert_allclose(p2["w"], p1["w"] - 0.1 * m_hat / (np.sqrt(v_hat) + 1e-8), rtol=1e-15)
    assert_allclose(params["w"], [1.0, -2.0])                        # pure: inputs untouched
    assert np.array_equal(moments["m"]["w"], [0, 0])


def test_adam_matches_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    params = {"W": rng.standard_normal((3, 4)), "b": rng.standard_normal(4)}
    tensors = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
    opt = torch.optim.Adam(list(tensors.values()), lr=0.05)
    moments = init_moments(params)
    for step in range(5):
        grads = {k: rng.standard_normal(v.shape) for k, v in params.items()}
        for k, t in tensors.items():
            t.grad = torch.tensor(grads[k])
        opt.step()
        params, moments = adam_update(params, grads, moments, lr=0.05, step=step)
    for k, t in tensors.items():          # torch's bias correction divides differently
        assert_allclose(params[k], t.detach().numpy(), rtol=1e-12, atol=1e-14)


def test_adam_keeps_float32_and_names_bad_arguments():
    params = {"w": np.ones(3, dtype=np.float32)}
    out, moments = adam_update(params, {"w": np.ones(3, dtype=np.float32)},
                               init_moments(params), lr=0.1, step=0)
    assert out["w"].dtype == moments["m"]["w"].dtype == moments["v"]["w"].dtype == np.float32
    g = {"w": np.ones(3)}
    with pytest.raises(ValueError, match="step must be an integer >= 0, got -1"):
        adam_update(params, g, init_moments(params), lr=0.1, step=-1)
    with pytest.raises(ValueError, match="moments"):
        adam_update(params, g, {"m": init_velocity(params)}, lr=0.1, step=0)
    with pytest.raises(ValueError, match="betas"):
        adam_update(params, g, init_moments(params), lr=0.1, step=0, betas=(1.0, 0.9))
