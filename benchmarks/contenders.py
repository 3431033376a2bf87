"""The contenders: one training step (forward + all gradients, linear readout, MSE at every
step) by each of lstm_ag's methods, PyTorch eager and JAX jit, on the same data and weights.

A :class:`Case` is one contender set up at one size, dtype and number of stacked layers:
``case.step()`` is the timed call, ``case.check`` says whether its loss (and every gradient,
compared by :func:`lstm_ag.params.flatten` name: ``Wx``, ``layers.0.Wx``, ...) agree with
lstm_ag's autograd method. torch and jax are imported only when their contender is set up;
when one is not installed, :func:`prepare` raises :class:`Unavailable` (a
``NotImplementedError``, which asv takes as "skip").
"""
import time
from dataclasses import dataclass, field
from functools import cache, lru_cache

import numpy as np

import lstm_ag
from lstm_ag.params import flatten, lstm_layers, nest_layers

__all__ = ["SIZES", "DTYPES", "PEERS", "contender_names", "make_problem", "step_flops",
           "Unavailable", "Check", "Case", "prepare", "reference", "torch_threads"]

#: Named sizes (B, T, D, H): batch, sequence length, input features, hidden units.
SIZES = {
    "tiny": (1, 50, 1, 16),
    "small": (32, 100, 8, 64),
    "medium": (64, 200, 32, 256),
    "large": (64, 100, 128, 512),
}
DTYPES = ("float64", "float32")
#: Readout width: one prediction per step.
OUTPUT_SIZE = 1
#: Other libraries timed alongside lstm_ag, when installed.
PEERS = ("torch", "jax")
#: Agreement with the autograd reference: loss (relative) and gradients (max abs difference
#: over the largest reference entry, per parameter).
LOSS_RTOL = {"float64": 1e-10, "float32": 1e-4}
GRAD_RTOL = {"float64": 1e-8, "float32": 1e-3}


def contender_names(peers=True):
    """lstm_ag's methods (``lstm_ag.METHODS``, as listed there) then the peers."""
    return tuple(lstm_ag.METHODS) + (PEERS if peers else ())


class Unavailable(NotImplementedError):
    """A peer that cannot run here: its library is not installed."""


def make_problem(B, T, D, H, dtype="float64", seed=0, num_layers=1):
    """Parameters with a readout and a random batch, all of ``dtype``.

    - num_layers: stacked LSTM layers (``lstm_ag.init_params(..., num_layers=...)``); layer
      0's weights, the readout and the batch do not depend on it.
    Returns ``(params, xs (T, B, D), targets (T, B, 1))``.
    """
    params = lstm_ag.init_params(D, H, OUTPUT_SIZE, seed=seed, dtype=np.dtype(dtype),
                                 num_layers=num_layers)
    rng = np.random.default_rng(seed + 1)
    xs = rng.standard_normal((T, B, D)).astype(dtype)
    targets = rng.standard_normal((T, B, OUTPUT_SIZE)).astype(dtype)
    return params, xs, targets


def step_flops(B, T, D, H, O=OUTPUT_SIZE, num_layers=1):
    """Matrix-multiply FLOPs of one training step (2 per multiply-add; elementwise work and
    the zero initial state are not discounted or counted).

    Forward: input projection ``2TBD*4H``, recurrence ``2TBH*4H``, readout ``2TBHO``.
    Backward: ``dWx`` (one more input projection; no gradient for the inputs), ``dWh`` and
    ``dh`` (two recurrences), ``dWy`` and ``dhs`` (two readouts). Total
    ``2 * input + 3 * recurrence + 3 * readout``.
    Each stacked layer above the first adds its input projection ``2TBH*4H`` three times
    (forward, its ``dWx``, and the gradient of its input, the hidden states of the layer
    below) and its recurrence three times.
    """
    inp = 2.0 * T * B * D * 4 * H
    rec = 2.0 * T * B * H * 4 * H
    out = 2.0 * T * B * H * O
    upper = (num_layers - 1) * (3 * rec + 3 * rec)       # an upper layer's input is H wide
    return 2 * inp + 3 * rec + 3 * out + upper


@cache
def _problem(size, dtype, num_layers=1):
    return make_problem(*size, dtype=dtype, num_layers=num_layers)


@lru_cache(maxsize=8)
def reference(size, dtype, num_layers=1):
    """lstm_ag's autograd loss and gradients for ``size`` (B, T, D, H), ``dtype`` and
    ``num_layers``: ``(loss, {flatten name: array})``."""
    params, xs, targets = _problem(size, dtype, num_layers)
    loss, grads = lstm_ag.value_and_grad(params, xs, targets, method="autograd")
    return float(loss), {k: np.asarray(v) for k, v in flatten(grads).items()}


@dataclass
class Check:
    """How a contender's first step compares with the autograd reference."""
    loss: float
    ref_loss: float
    loss_rel: float
    grad_rel: float
    loss_rtol: float
    grad_rtol: float
    worst: str = ""

    @property
    def ok(self):
        return bool(self.loss_rel <= self.loss_rtol and self.grad_rel <= self.grad_rtol)

    def __str__(self):
        if self.ok:
            return "ok"
        bad = []
        if not self.loss_rel <= self.loss_rtol:
            bad.append(f"loss rel {self.loss_rel:.1e}")
        if not self.grad_rel <= self.grad_rtol:
            bad.append(f"grad {self.worst} rel {self.grad_rel:.1e}")
        return "DISAGREES: " + ", ".join(bad)

    def as_dict(self):
        return {"ok": self.ok, "loss": self.loss, "ref_loss": self.ref_loss,
                "loss_rel": self.loss_rel, "grad_rel": self.grad_rel, "worst_grad": self.worst,
                "loss_rtol": self.loss_rtol, "grad_rtol": self.grad_rtol}


def _check(loss, grads, size, dtype, num_layers=1):
    """Compare a first step's loss and gradients (a nested tree, as the parameters) with the
    reference, gradient by :func:`~lstm_ag.params.flatten` name."""
    ref_loss, ref_grads = reference(size, dtype, num_layers)
    grads = flatten(grads)
    loss = float(loss)
    loss_rel = abs(loss - ref_loss) / max(abs(ref_loss), np.finfo(np.float64).tiny)
    if not np.isfinite(loss_rel):
        loss_rel = np.inf
    grad_rel, worst = 0.0, ""
    for key, ref in ref_grads.items():
        if key not in grads:
            grad_rel, worst = np.inf, f"{key} missing"
            break
        got = np.asarray(grads[key], dtype=np.float64)
        if got.shape != ref.shape:
            grad_rel, worst = np.inf, f"{key} shape {got.shape} != {ref.shape}"
            break
        scale = max(float(np.max(np.abs(ref))), np.finfo(np.float64).tiny)
        rel = float(np.max(np.abs(got - ref))) / scale
        if not np.isfinite(rel):
            rel = np.inf
        if rel > grad_rel or not worst:
            grad_rel, worst = rel, key
    return Check(loss, ref_loss, float(loss_rel), grad_rel, LOSS_RTOL[dtype], GRAD_RTOL[dtype],
                 worst)


@dataclass
class Case:
    """One contender at one size, dtype and number of layers, set up and checked.

    - name: the contender; size_name, size ``(B, T, D, H)``, dtype: the problem.
    - step: the timed call, one training step (returns nothing useful).
    - check: agreement of its first step with the autograd reference.
    - first_call: seconds of the first step (for jax: trace + compile + one run).
    - numpy_memory: its allocations are numpy's, which tracemalloc sees.
    - extra: what the report records beside it (torch's threads, jax's device).
    - num_layers: stacked LSTM layers.
    """
    name: str
    size_name: str
    size: tuple
    dtype: str
    step: object
    check: Check
    first_call: float
    numpy_memory: bool
    extra: dict = field(default_factory=dict)
    num_layers: int = 1


# --- lstm_ag's own methods ------------------------------------------------------------------

def _lstm_ag(method, params, xs, targets):
    def step():
        return lstm_ag.value_and_grad(params, xs, targets, method=method)
    return step, step, True, {}


# --- PyTorch eager --------------------------------------------------------------------------

_TORCH_THREADS = None


def torch_threads(n):
    """Set the thread count the torch contender uses (call before :func:`prepare`)."""
    global _TORCH_THREADS
    _TORCH_THREADS = n


def _import(name):
    try:
        return __import__(name)
    except ImportError:
        raise Unavailable(f"{name} is not installed") from None


def _torch(params, xs, targets):
    torch = _import("torch")
    if _TORCH_THREADS is not None and torch.get_num_threads() != _TORCH_THREADS:
        torch.set_num_threads(_TORCH_THREADS)
    tdtype = {np.dtype("float64"): torch.float64, np.dtype("float32"): torch.float32}[xs.dtype]
    D, H, O = xs.shape[2], params["Wh"].shape[0], params["Wy"].shape[1]
    layers = [directions[0] for directions in lstm_layers(params)]    # one direction
    lstm = torch.nn.LSTM(D, H, num_layers=len(layers), dtype=tdtype)
    linear = torch.nn.Linear(H, O, dtype=tdtype)
    lstm.load_state_dict(_torch_lstm_state(torch, layers))
    linear.load_state_dict({"weight": torch.from_numpy(np.ascontiguousarray(params["Wy"].T)),
                            "bias": torch.from_numpy(params["by"].copy())})
    x = torch.from_numpy(np.ascontiguousarray(xs))            # (T, B, D): nn.LSTM's layout
    y = torch.from_numpy(np.ascontiguousarray(targets))
    mse_loss = torch.nn.functional.mse_loss

    def step():
        lstm.zero_grad(set_to_none=True)
        linear.zero_grad(set_to_none=True)
        hs, _ = lstm(x)
        loss = mse_loss(linear(hs), y)
        loss.backward()
        return loss

    def first():
        loss = step()
        g = {k: p.grad.detach().numpy() for k, p in lstm.named_parameters()}
        # d loss / d b = the gradient of bias_ih (= that of bias_hh)
        grads = nest_layers([{"Wx": g[f"weight_ih_l{k}"].T, "Wh": g[f"weight_hh_l{k}"].T,
                              "b": g[f"bias_ih_l{k}"]} for k in range(len(layers))], 1)
        grads.update(Wy=linear.weight.grad.detach().numpy().T,
                     by=linear.bias.grad.detach().numpy())
        return loss.item(), grads
    return step, first, False, {"threads": torch.get_num_threads()}


def _torch_lstm_state(torch, layers):
    """``nn.LSTM(D, H, num_layers=len(layers))``'s state dict holding ``layers`` (one dict of
    ``Wx, Wh, b`` per layer): ``weight_ih_l<k> = Wx.T``, ``weight_hh_l<k> = Wh.T``,
    ``bias_ih_l<k> = b``, ``bias_hh_l<k> = 0`` (torch adds the two biases); the gates are in
    the same order, i, f, g, o."""
    state = {}
    for k, w in enumerate(layers):
        for key, value in ((f"weight_ih_l{k}", w["Wx"].T), (f"weight_hh_l{k}", w["Wh"].T),
                           (f"bias_ih_l{k}", w["b"]), (f"bias_hh_l{k}", np.zeros_like(w["b"]))):
            state[key] = torch.from_numpy(np.ascontiguousarray(value).copy())
    return state


# --- JAX jit(value_and_grad) with lax.scan ----------------------------------------------------

def _jax_layer(w, xs):
    """One LSTM layer over time: the hidden states ``(T, B, H)`` of inputs ``xs (T, B, D)``."""
    import jax
    import jax.numpy as jnp
    H = w["Wh"].shape[0]
    zx = xs @ w["Wx"] + w["b"]                                  # (T, B, 4H), before the scan

    def cell(carry, zx_t):
        h, c = carry
        z = zx_t + h @ w["Wh"]
        i = jax.nn.sigmoid(z[:, :H])
        f = jax.nn.sigmoid(z[:, H:2 * H])
        g = jnp.tanh(z[:, 2 * H:3 * H])
        o = jax.nn.sigmoid(z[:, 3 * H:])
        c = f * c + i * g
        h = o * jnp.tanh(c)
        return (h, c), h

    zeros = jnp.zeros((xs.shape[1], H), xs.dtype)
    _, hs = jax.lax.scan(cell, (zeros, zeros), zx)
    return hs


def _jax_loss(p, xs, targets):
    import jax.numpy as jnp
    hs = xs
    for directions in lstm_layers(p):          # layer l reads layer l - 1's hidden states
        hs = _jax_layer(directions[0], hs)
    err = hs @ p["Wy"] + p["by"] - targets
    return jnp.mean(err * err)


def _jax(params, xs, targets):
    jax = _import("jax")
    jax.config.update("jax_enable_x64", True)   # float64 arrays stay float64; float32 stays 32
    import jax.numpy as jnp
    p = jax.tree_util.tree_map(jnp.asarray, params)              # nested dicts and lists
    x, y = jnp.asarray(xs), jnp.asarray(targets)
    fn = jax.jit(jax.value_and_grad(_jax_loss))

    def step():
        return jax.block_until_ready(fn(p, x, y))

    def first():
        loss, grads = step()
        return float(loss), jax.tree_util.tree_map(np.asarray, grads)
    return step, first, False, {"device": str(jax.devices()[0])}


_BUILDERS = {"torch": _torch, "jax": _jax}


def prepare(size_name, dtype, name, size=None, num_layers=1):
    """Set up contender ``name`` at a named size (or an explicit ``size`` (B, T, D, H)),
    ``dtype`` and ``num_layers`` stacked layers, run its first step and check it against the
    autograd reference.

    Returns a :class:`Case`; raises :class:`Unavailable` when the contender cannot run here.
    """
    size = tuple(SIZES[size_name] if size is None else size)
    params, xs, targets = _problem(size, dtype, num_layers)
    if name in lstm_ag.METHODS:
        step, first, numpy_memory, extra = _lstm_ag(name, params, xs, targets)
    elif name in _BUILDERS:
        step, first, numpy_memory, extra = _BUILDERS[name](params, xs, targets)
    else:
        raise ValueError(f"unknown contender {name!r}; known: {', '.join(contender_names())}")
    t0 = time.perf_counter()
    loss, grads = first()
    first_call = time.perf_counter() - t0
    return Case(name, size_name, size, dtype, step,
                _check(loss, grads, size, dtype, num_layers), first_call, numpy_memory, extra,
                num_layers)
