r"""The LSTM forward pass, written once against ``autograd.numpy``.

For each time step t, with x_t ``(B, D)`` and the state h_{t-1}, c_{t-1} ``(B, H)``
(row-vector convention, batch rows first; sigma is the logistic sigmoid)::

    i_t = sigma(x_t W_xi + h_{t-1} W_hi + b_i)      input gate: how much to write
    f_t = sigma(x_t W_xf + h_{t-1} W_hf + b_f)      forget gate: how much of c_{t-1} to keep
    g_t = tanh (x_t W_xg + h_{t-1} W_hg + b_g)      candidate, the notebooks' C~_t
    o_t = sigma(x_t W_xo + h_{t-1} W_ho + b_o)      output gate: how much of the cell to show
    c_t = f_t * c_{t-1} + i_t * g_t                 cell state
    h_t = o_t * tanh(c_t)                           hidden state

The four gates share one matrix product: ``z_t = x_t @ Wx + h_{t-1} @ Wh + b`` is ``(B, 4H)``
and holds the pre-activations of i, f, g, o side by side (:data:`GATES`). The input part
``x_t @ Wx + b`` is computed for all steps at once before the time loop; each step then adds
one recurrent product. A readout ``y_t = h_t @ Wy + by`` gives predictions.

:func:`lstm_step` is the only place these equations are written. The traced loop here, the
hand-written backward (:mod:`lstm_ag.bptt`) and the fast path (:mod:`lstm_ag.fast`) all call it.
"""
import autograd.numpy as np
import numpy as onp
from autograd.builtins import dict as traced_dict
from autograd.extend import primitive

from .inputs import as_mask, as_sequence, as_state, as_targets
from .ops import PLAIN, TRACEABLE
from .params import check_params, is_traced, param_dtype, untraced

__all__ = ["GATES", "gate_slice", "split_gates", "lstm_step", "scan", "SequenceCache",
           "scan_with_cache", "lstm_sequence", "readout_mse", "lstm_forward", "predict", "mse"]

#: The gates along the 4H axis, in order (the order of PyTorch, Keras and Flax).
GATES = ("i", "f", "g", "o")


def gate_slice(gate, hidden_size):
    """The slice of the 4H axis that holds ``gate`` (one of ``"i", "f", "g", "o"``)."""
    k = GATES.index(gate)
    return slice(k * hidden_size, (k + 1) * hidden_size)


def split_gates(z):
    """Split ``(..., 4H)`` into the four ``(..., H)`` blocks ``i, f, g, o`` (views)."""
    H = z.shape[-1] // 4
    return z[..., :H], z[..., H:2 * H], z[..., 2 * H:3 * H], z[..., 3 * H:]


def lstm_step(Wh, zx_t, h, c, ops=TRACEABLE):
    """One LSTM step from a precomputed input projection.

    - Wh: recurrent weights ``(H, 4H)``.
    - zx_t: the input part of the pre-activation, ``x_t @ Wx + b``, ``(B, 4H)``.
    - h, c: the previous hidden and cell state, each ``(B, H)``.
    - ops: the sigmoid and tanh to use: :data:`lstm_ag.ops.TRACEABLE` (default) works on
      autograd boxes and plain arrays alike; :data:`lstm_ag.ops.PLAIN` only on plain arrays,
      and faster.
    Returns ``((h, c), (i, f, g, o, tanh_c))``: the new state, each ``(B, H)``, and the gate
    activations with tanh(c_t), each ``(B, H)``, which the hand-written backward caches.
    """
    H = Wh.shape[0]
    z = zx_t + h @ Wh
    i_f = ops.sigmoid(z[:, :2 * H])      # i and f are contiguous: one sigmoid for both
    g = ops.tanh(z[:, 2 * H:3 * H])
    o = ops.sigmoid(z[:, 3 * H:])
    i, f = i_f[:, :H], i_f[:, H:]
    c = f * c + i * g
    tanh_c = ops.tanh(c)
    h = o * tanh_c
    return (h, c), (i, f, g, o, tanh_c)


def scan(Wx, Wh, b, xs, h0, c0, ops=TRACEABLE):
    """Run :func:`lstm_step` over a whole sequence (traceable by autograd).

    - Wx ``(D, 4H)``, Wh ``(H, 4H)``, b ``(4H,)``: the LSTM weights.
    - xs: inputs ``(T, B, D)``; h0, c0: initial state, each ``(B, H)``.
    - ops: as for :func:`lstm_step`.
    Returns ``(hs, c)``: every hidden state ``(T, B, H)`` and the last cell state ``(B, H)``.
    """
    zx = xs @ Wx + b                      # (T, B, 4H): the input projection, once
    h, c = h0, c0
    hs = []
    for t in range(xs.shape[0]):
        (h, c), _ = lstm_step(Wh, zx[t], h, c, ops)
        hs.append(h)
    return np.stack(hs), c


class SequenceCache:
    """What the backward needs from a forward run, in one buffer.

    ``store`` is ``(7, T + 1, B, H)``: the fields ``h, c, i, f, g, o, tanh_c`` (in
    :attr:`FIELDS` order), time-major, each field contiguous. Time index 0 holds the initial
    state ``h0, c0`` (unused for the gate fields), index t + 1 the values of step t, so that
    ``hs_prev = store[0, :-1]`` and ``hs = store[0, 1:]`` are both views. Also kept: the
    inputs ``xs (T, B, D)`` and the weights ``Wx (D, 4H)``, ``Wh (H, 4H)``.
    """
    FIELDS = ("h", "c", "i", "f", "g", "o", "tanh_c")
    __slots__ = ("xs", "Wx", "Wh", "store")

    def __init__(self, xs, Wx, Wh, store):
        self.xs, self.Wx, self.Wh, self.store = xs, Wx, Wh, store

    def __getattr__(self, name):        # cache.h, cache.i, ...: (T + 1, B, H) or (T, B, H)
        try:
            k = SequenceCache.FIELDS.index(name)
        except ValueError:
            raise AttributeError(name) from None
        return self.store[k] if k < 2 else self.store[k, 1:]


def scan_with_cache(Wx, Wh, b, xs, h0, c0):
    """:func:`scan` on plain arrays, keeping what the backward needs.

    - Wx ``(D, 4H)``, Wh ``(H, 4H)``, b ``(4H,)``, xs ``(T, B, D)``, h0, c0 ``(B, H)``:
      numpy arrays (not autograd boxes).
    Returns a :class:`SequenceCache`; ``cache.h[1:]`` are the hidden states ``(T, B, H)``.
    """
    T, B, _ = xs.shape
    H = Wh.shape[0]
    zx = xs @ Wx + b
    store = onp.empty((7, T + 1, B, H), dtype=zx.dtype)
    store[0, 0], store[1, 0] = h0, c0
    h, c = h0, c0
    for t in range(T):
        (h, c), acts = lstm_step(Wh, zx[t], h, c, PLAIN)
        # One copy per step into the buffer: cheaper than keeping every step's fresh arrays
        # alive (new memory each step: 25% of the forward at B=64, H=512) and than one
        # assignment per field (numpy calls dominate at B=1, H=16).
        store[:, t + 1] = (h, c) + acts
    return SequenceCache(xs, Wx, Wh, store)


@primitive
def lstm_sequence(params, xs, h0, c0):
    """The whole sequence as one autograd primitive: ``(hs (T, B, H), c_T (B, H))``.

    - params: a dict with ``Wx (D, 4H)``, ``Wh (H, 4H)``, ``b (4H,)`` (other entries get a
      zero gradient); xs ``(T, B, D)``; h0, c0 ``(B, H)``.
    Its forward is :func:`scan_with_cache`; its gradient rules, registered by
    :mod:`lstm_ag.fast`, run the hand-written BPTT on that cache, so autograd records one
    operation for the whole sequence instead of a dozen per step. It takes the dict whole
    (autograd differentiates dicts natively) so that differentiating a params dict costs no
    per-entry bookkeeping. ``hs`` is a view into the cache's buffer, which is how the
    backward finds the cache.
    """
    store = scan_with_cache(params["Wx"], params["Wh"], params["b"], xs, h0, c0).store
    return store[0, 1:], store[1, -1]


def readout_mse(params, hs, targets, weights):
    """The MSE of the readout ``y = hs @ Wy + by`` against targets (traceable).

    - params: a dict with ``Wy (H, O)``, ``by (O,)``; hs ``(T, B, H)``; targets
      ``(T, B, O)``; weights ``(T, B, 1)`` or None: with weights, the loss is
      ``sum(weights * err**2) / (sum(weights) * O)``.
    """
    err = hs @ params["Wy"] + params["by"] - targets
    if weights is None:
        return np.mean(err * err)
    return np.sum(weights * err * err) / (np.sum(weights) * err.shape[-1])


#: :func:`readout_mse` as one autograd primitive; its gradient (registered by
#: :mod:`lstm_ag.fast`) is the hand-written :func:`lstm_ag.bptt.readout_mse_backward`.
readout_mse_primitive = primitive(readout_mse)


def _prepare(params, xs, state, readout):
    D, H, O = check_params(params, readout=readout)
    dtype = param_dtype(params)
    xs, single = as_sequence(xs, D, dtype)
    h0, c0 = as_state(state, xs.shape[1], H, dtype, single)
    return xs, h0, c0, single


def forward_cache(params, xs, state=None):
    """Run the forward on plain arrays and keep every step's activations.

    - params: ``Wx (D, 4H)``, ``Wh (H, 4H)``, ``b (4H,)`` (a readout is ignored).
    - xs: ``(T, B, D)``, or ``(T, D)`` for one sequence; state: optional ``(h0, c0)``.
    Returns a :class:`SequenceCache` (always batched: one sequence has B = 1), whose named
    views are ``h``, ``c`` ``(T + 1, B, H)`` (row 0 the initial state) and ``i, f, g, o``,
    ``tanh_c`` ``(T, B, H)``.
    """
    xs, h0, c0, _ = _prepare(params, xs, state, readout=False)
    p = untraced(params)
    return scan_with_cache(p["Wx"], p["Wh"], p["b"], xs, h0, c0)


def _traced_dict(params):
    """params as something autograd's primitives see as traced when anything in it is."""
    if is_traced(params) or not any(is_traced(v) for v in params.values()):
        return params
    return traced_dict(params)         # a dict built of boxes: record it as one traced dict


def _hidden(params, xs, h0, c0, method):
    """hs ``(T, B, H)`` and c_T: traced step by step (``"autograd"``), through the
    whole-sequence primitive when anything is being differentiated (``"fast"``), else plain."""
    if method not in ("fast", "autograd"):
        raise ValueError(f"method must be 'fast' or 'autograd', got {method!r}")
    params = _traced_dict(params)
    if not any(is_traced(a) for a in (params, xs, h0, c0)):
        return scan(params["Wx"], params["Wh"], params["b"], xs, h0, c0, ops=PLAIN)
    if method == "autograd":
        return scan(params["Wx"], params["Wh"], params["b"], xs, h0, c0)
    return lstm_sequence(params, xs, h0, c0)


def lstm_forward(params, xs, state=None, *, method="fast"):
    """Run the LSTM over a sequence.

    - params: dict with ``Wx (D, 4H)``, ``Wh (H, 4H)``, ``b (4H,)`` (a readout is ignored).
    - xs: ``(T, B, D)`` time-major batch, or ``(T, D)`` / a list of T vectors for one sequence.
    - state: optional ``(h0, c0)``, each ``(B, H)`` (``(H,)`` for one sequence); zeros if None.
    - method: how autograd differentiates it: ``"fast"`` records the whole sequence as one
      primitive whose gradient is the hand BPTT; ``"autograd"`` traces every step.
      Both give the same numbers; without differentiation they are the same code.
    Returns ``(hs, (h, c))``: hs ``(T, B, H)`` (or ``(T, H)``), and the final state.

    Example::

        >>> params = init_params(1, 4)
        >>> hs, (h, c) = lstm_forward(params, numpy.zeros((5, 1)))
        >>> hs.shape, h.shape
        ((5, 4), (4,))
    """
    xs, h0, c0, single = _prepare(params, xs, state, readout=False)
    out = _hidden(params, xs, h0, c0, method)
    hs, c = out[0], out[1]               # (indexing records less than unpacking a traced tuple)
    h = hs[-1]
    if single:
        return hs[:, 0], (h[0], c[0])
    return hs, (h, c)


def predict(params, xs, state=None, *, method="fast"):
    """Predictions of the linear readout at every step, ``y_t = h_t @ Wy + by``.

    - params: ``Wx, Wh, b`` and the readout ``Wy (H, O)``, ``by (O,)``.
    - xs, state, method: as for :func:`lstm_forward`.
    Returns ys ``(T, B, O)``, or ``(T, O)`` for one sequence.
    """
    xs, h0, c0, single = _prepare(params, xs, state, readout=True)
    hs = _hidden(params, xs, h0, c0, method)[0]
    ys = hs @ params["Wy"] + params["by"]
    return ys[:, 0] if single else ys


def loss_inputs(params, xs, targets, state=None, mask=None):
    """Validate the arguments of :func:`mse` once; return them as :func:`mse_of` takes them
    after ``params``: ``(xs, h0, c0, targets, weights)``, all time-major ``(T, B, .)``
    (weights ``(T, B, 1)`` or None)."""
    xs, h0, c0, single = _prepare(params, xs, state, readout=True)
    T, B, _ = xs.shape
    dtype = param_dtype(params)
    O = untraced(untraced(params)["Wy"]).shape[1]
    targets = as_targets(targets, (T, B, O), dtype, single)
    return xs, h0, c0, targets, as_mask(mask, T, B, dtype, single)


def mse_of(params, xs, h0, c0, targets, weights, method="fast"):
    """The loss of :func:`mse` on arguments validated by :func:`loss_inputs`."""
    hs = _hidden(params, xs, h0, c0, method)[0]
    params = _traced_dict(params)
    traced = any(is_traced(a) for a in (params, hs, targets, weights))
    loss = readout_mse_primitive if method == "fast" and traced else readout_mse
    return loss(params, hs, targets, weights)


def mse(params, xs, targets, state=None, *, mask=None, method="fast"):
    """Mean squared error of :func:`predict` against ``targets``, over every element.

    - targets: the predictions' shape, ``(T, B, O)`` or ``(T, O)``.
    - mask: optional loss weights per step, ``(T,)`` or ``(T, B)``; the loss is then
      ``sum(mask * err**2) / (sum(mask) * O)`` (for example the last step only).
    - method: as for :func:`lstm_forward`.
    Returns a scalar.
    """
    return mse_of(params, *loss_inputs(params, xs, targets, state, mask), method=method)
