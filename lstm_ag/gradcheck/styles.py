"""The styles courses teach: each one's names, gate order, axis order and shapes, as data.

::

    lstm_ag.check_step(lstm_cell_forward, lstm_cell_backward, style="dls")
    lstm_ag.check_gradients(params, xs, forward=lstm_forward, backward=lstm_backward,
                            style="dls")

A style is not a checker: it says how to call the student's functions and how to read what
they return, and the one checker (:func:`~lstm_ag.gradcheck.step.check_step`,
:func:`~lstm_ag.gradcheck.check.check_gradients`) compares. Each :class:`Style` holds

* its pairs of functions (:class:`Pair`: names, parameter names, what they return),
* ``to_user(arrays, kind, sizes)``: the checker's arrays (this library's layout, gates
  i, f, g, o; ``x``, ``prev_h``, ``prev_c``, ``dnext_h``, ``dnext_c`` for a step, ``x (T, B,
  D)``, ``h0``, ``c0``, ``dhs (T, B, H)`` for a sequence) as the student's arguments, by name;
* ``entries(kind, sizes)``: the student's outputs, by name, each with its shape in the
  student's terms and the blocks of this library's arrays it holds (the "from" direction);
* ``names`` and ``words``: the rows' and the sentences' names in the student's terms.

========  ============================================================  ==================
style     functions                                                     layout
========  ============================================================  ==================
cs231n    lstm_step_forward/_backward; lstm_forward/lstm_backward        rows, gates i f o g
dls       lstm_cell_forward/_backward; lstm_forward/lstm_backward        columns, W* on [a; x]
notebook  a class: forward(inputs), backward(dL_dh, lr) (notebook 001)   columns, one sequence
karpathy  LSTM.forward(X, WLSTM, c0, h0), LSTM.backward(dHout, cache)    WLSTM (1+D+H, 4H)
torch     lstm_forward(x, h0, c0, weight_ih, ...), lstm_backward         batch first
========  ============================================================  ==================
"""
from __future__ import annotations

import difflib
import inspect
import re
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ..params import GATES
from .compare import GATE_WIDE, Block, ReturnedWrongly, permute_gates

__all__ = ["STYLES", "Style", "Pair", "StyleMismatch", "get_style", "detect", "call_forward",
           "call_backward", "check_signature", "check_plain_backward", "notebook_class",
           "row_blocks", "rename_rows", "translate"]


class StyleMismatch(TypeError):
    """The student's function does not have the signature of the style it is checked as.

    ``str()`` says so for Python (``pass style='dls'``); ``cli`` for the command line."""

    def __init__(self, text: str, style: str | None):
        hint = f": this is the {style} style; pass " if style else ""
        super().__init__(text + (hint + f"style={style!r}" if style else ""))
        self.cli = text + (hint + f"--style {style}" if style else "")


@dataclass(frozen=True)
class Pair:
    """One pair of a style's functions.

    - forward, backward: their names in the student's file (``"LSTM.forward"``: a method).
    - forward_args, backward_args: their parameters, as the style writes them; the backward's
      are looked up among the student's arguments and what the forward returned.
    - forward_out: the names of what the forward returns (``"cache"``: passed on).
    - backward_out: the names of the returned tuple, or None for a dict (keys: the entries).
    - states: which initial states the forward takes (``"h0"``, ``"c0"``), for a sequence.
    """
    forward: str
    backward: str
    forward_args: tuple
    backward_args: tuple
    forward_out: tuple
    backward_out: tuple | None = None
    states: tuple = ()


@dataclass(frozen=True)
class Entry:
    """One of the student's outputs: its name, its shape, and the blocks of this library's
    arrays it holds, ``((key, gate or None, extract), ...)`` (``extract(array)`` is the block
    in this library's layout)."""
    name: str
    shape: tuple
    pieces: tuple


@dataclass(frozen=True)
class Style:
    """A style (see the module docstring). ``upstream``: the sequence backward's loss;
    ``forward_rows``: the step forward's outputs that hold next_h and next_c; ``aliases``:
    extra arrays compared with another's reference (PyTorch's second bias)."""
    name: str
    course: str
    step: Pair | None
    sequence: Pair | None
    to_user: Callable
    entries: Callable
    names: dict
    words: dict = field(default_factory=dict)
    letters: dict = field(default_factory=lambda: {g: g for g in GATES})
    upstream: str = "all"
    forward_rows: tuple = ("next_h", "next_c")
    aliases: dict = field(default_factory=dict)
    call: Callable | None = None           # a class-based style calls its student otherwise

    def pair(self, kind: str) -> Pair:
        pair = self.step if kind == "step" else self.sequence
        if pair is None:
            other = "check_gradients" if kind == "step" else "check_step"
            raise ValueError(f"style {self.name!r} has no {kind} pair ({self.course}); "
                             f"check it with {other}")
        return pair


# ---------------------------------------------------------------- helpers of the styles

def _cols(order, H):
    """Gate -> the slice of the 4H axis that holds it in ``order``."""
    return {g: slice(order.index(g) * H, (order.index(g) + 1) * H) for g in GATES}


def _gated(key, order, H, take):
    """Pieces of a 4H-wide student array: ``take(array, columns)`` is the block of ``key``."""
    return tuple((key, g, lambda a, s=s: take(a, s)) for g, s in _cols(order, H).items())


def _whole(key, extract=lambda a: a):
    return ((key, None, extract),)


def _per_gate(p, letters):
    """This library's Wx, Wh, b as one matrix per gate on [h; x] (H, H + D), bias (H, 1)."""
    H = p["Wh"].shape[0]
    out = {}
    for g, s in _cols("ifgo", H).items():
        out["W" + letters[g]] = np.concatenate((p["Wh"][:, s].T, p["Wx"][:, s].T), axis=1)
        out["b" + letters[g]] = p["b"][s][:, None]
    return out


def _per_gate_entries(s, letters, d="d", order="ifgo"):
    H, D = s["H"], s["D"]
    out = []
    for g in order:
        L = letters[g]
        out.append(Entry(f"{d}W{L}", (H, H + D), (("Wh", g, lambda a: a[:, :H].T),
                                                   ("Wx", g, lambda a: a[:, H:].T))))
        out.append(Entry(f"{d}b{L}", (H, 1), (("b", g, lambda a: a[:, 0]),)))
    return out


# ---------------------------------------------------------------- cs231n

def _cs231n_to(a, kind, s):
    w = {k: permute_gates(a[k], "ifgo", "ifog") for k in GATE_WIDE}
    if kind == "step":
        return {"x": a["x"], "prev_h": a["prev_h"], "prev_c": a["prev_c"], **w,
                "dnext_h": a["dnext_h"], "dnext_c": a["dnext_c"]}
    return {"x": a["x"].transpose(1, 0, 2), "h0": a["h0"], **w,
            "dh": a["dhs"].transpose(1, 0, 2)}


def _cs231n_entries(kind, s):
    D, H, B, T = s["D"], s["H"], s["B"], s["T"]
    weights = [Entry("dWx", (D, 4 * H), _gated("Wx", "ifog", H, lambda a, c: a[:, c])),
               Entry("dWh", (H, 4 * H), _gated("Wh", "ifog", H, lambda a, c: a[:, c])),
               Entry("db", (4 * H,), _gated("b", "ifog", H, lambda a, c: a[c]))]
    if kind == "step":
        return [Entry("dx", (B, D), _whole("x")), Entry("dprev_h", (B, H), _whole("prev_h")),
                Entry("dprev_c", (B, H), _whole("prev_c")), *weights]
    return [Entry("dx", (B, T, D), _whole("x", lambda a: a.transpose(1, 0, 2))),
            Entry("dh0", (B, H), _whole("h0")), *weights]


# ---------------------------------------------------------------- deeplearning.ai

_DLS_LETTERS = {"i": "i", "f": "f", "g": "c", "o": "o"}


def _dls_to(a, kind, s):
    rng = np.random.default_rng(s.get("seed", 0) + 7)     # Wy, by: the prediction's, unused
    dtype = a["Wx"].dtype
    parameters = {**_per_gate(a, _DLS_LETTERS),
                  "Wy": rng.standard_normal((2, s["H"])).astype(dtype),
                  "by": rng.standard_normal((2, 1)).astype(dtype)}
    if kind == "step":
        return {"xt": a["x"].T, "a_prev": a["prev_h"].T, "c_prev": a["prev_c"].T,
                "parameters": parameters, "da_next": a["dnext_h"].T, "dc_next": a["dnext_c"].T}
    return {"x": a["x"].transpose(2, 1, 0), "a0": a["h0"].T, "parameters": parameters,
            "da": a["dhs"].transpose(2, 1, 0)}


def _dls_entries(kind, s):
    D, H, B, T = s["D"], s["H"], s["B"], s["T"]
    weights = _per_gate_entries(s, _DLS_LETTERS, order="figo")      # the course's order
    if kind == "step":
        return [Entry("dxt", (D, B), _whole("x", np.transpose)),
                Entry("da_prev", (H, B), _whole("prev_h", np.transpose)),
                Entry("dc_prev", (H, B), _whole("prev_c", np.transpose)), *weights]
    return [Entry("dx", (D, B, T), _whole("x", lambda a: a.transpose(2, 1, 0))),
            Entry("da0", (H, B), _whole("h0", np.transpose)), *weights]


# ---------------------------------------------------------------- notebook 001's class

def _notebook_to(a, kind, s):
    if s["B"] != 1:
        raise ValueError("the notebook style checks one sequence: xs must be (T, D), got a "
                         f"batch of {s['B']}")
    dh = a["dhs"] if a["dhs"].ndim == 2 else a["dhs"][-1]
    return {"inputs": a["x"][:, 0], "dL_dh": dh.reshape(-1, 1),
            **_per_gate(a, {g: g for g in GATES})}


def _notebook_entries(kind, s):
    return _per_gate_entries(s, {g: g for g in GATES}, order="figo")    # the notebook's order


def _notebook_call(pair, cls, _unused, user):
    """Notebook 001's protocol: make the class, set its weights, run forward(inputs), then
    backward(dL_dh, lr=1.0), which updates in place: the gradient is old - new."""
    D, H = user["inputs"].shape[1], user["dL_dh"].shape[0]
    try:
        inspect.signature(cls).bind(D, H)
    except (TypeError, ValueError):
        raise StyleMismatch(f"{getattr(cls, '__name__', cls)} must be a class made as "
                            "LSTM(input_size, hidden_size)", None) from None
    net = cls(D, H)
    names = [k for k in user if k[0] in "Wb" and len(k) == 2]
    for k in names:
        setattr(net, k, user[k].copy())
    net.forward(user["inputs"])
    try:
        net.backward(user["dL_dh"], lr=1.0)
    except TypeError:
        net.backward(user["dL_dh"], 1.0)
    return {"d" + k: user[k] - np.asarray(getattr(net, k)) for k in names}


# ---------------------------------------------------------------- Karpathy's lstm.py

def _karpathy_to(a, kind, s):
    w = {k: permute_gates(a[k], "ifgo", "ifog") for k in GATE_WIDE}
    return {"X": a["x"], "WLSTM": np.concatenate((w["b"][None], w["Wx"], w["Wh"])),
            "c0": a["c0"], "h0": a["h0"], "dHout_in": a["dhs"]}


def _karpathy_entries(kind, s):
    D, H, B, T = s["D"], s["H"], s["B"], s["T"]
    pieces = []
    for g, c in _cols("ifog", H).items():
        pieces += [("b", g, lambda a, c=c: a[0, c]), ("Wx", g, lambda a, c=c: a[1:1 + D, c]),
                   ("Wh", g, lambda a, c=c: a[1 + D:, c])]
    return [Entry("dX", (T, B, D), _whole("x")), Entry("dWLSTM", (1 + D + H, 4 * H), pieces),
            Entry("dc0", (B, H), _whole("c0")), Entry("dh0", (B, H), _whole("h0"))]


# ---------------------------------------------------------------- a PyTorch-style loop

def _torch_to(a, kind, s):
    half = a["b"] / 2                          # any split: bias_ih + bias_hh is the bias
    return {"x": a["x"].transpose(1, 0, 2), "h0": a["h0"], "c0": a["c0"],
            "weight_ih": a["Wx"].T, "weight_hh": a["Wh"].T, "bias_ih": a["b"] - half,
            "bias_hh": half, "doutput": a["dhs"].transpose(1, 0, 2)}


def _torch_entries(kind, s):
    D, H, B, T = s["D"], s["H"], s["B"], s["T"]
    return [Entry("x", (B, T, D), _whole("x", lambda a: a.transpose(1, 0, 2))),
            Entry("h0", (B, H), _whole("h0")), Entry("c0", (B, H), _whole("c0")),
            Entry("weight_ih", (4 * H, D), _gated("Wx", "ifgo", H, lambda a, c: a[c].T)),
            Entry("weight_hh", (4 * H, H), _gated("Wh", "ifgo", H, lambda a, c: a[c].T)),
            Entry("bias_ih", (4 * H,), _gated("b", "ifgo", H, lambda a, c: a[c])),
            Entry("bias_hh", (4 * H,), _gated("b_hh", "ifgo", H, lambda a, c: a[c]))]


# ---------------------------------------------------------------- the registry

_STEP_WORDS = {"dnext_h": "da_next", "dnext_c": "dc_next", "dprev_h": "da_prev",
               "dprev_c": "dc_prev", "prev_h": "a_prev", "prev_c": "c_prev",
               "next_h": "a_next", "next_c": "c_next", "h_prev": "a_prev", "step_forward":
               "lstm_cell_forward", "step_backward": "lstm_cell_backward"}

STYLES = {s.name: s for s in (
    Style("cs231n", "CS231n's rnn_layers.py",
          Pair("lstm_step_forward", "lstm_step_backward",
               ("x", "prev_h", "prev_c", "Wx", "Wh", "b"), ("dnext_h", "dnext_c", "cache"),
               ("next_h", "next_c", "cache"), ("dx", "dprev_h", "dprev_c", "dWx", "dWh", "db")),
          Pair("lstm_forward", "lstm_backward", ("x", "h0", "Wx", "Wh", "b"), ("dh", "cache"),
               ("h", "cache"), ("dx", "dh0", "dWx", "dWh", "db"), ("h0",)),
          _cs231n_to, _cs231n_entries, names={}),
    Style("dls", "deeplearning.ai's Deep Learning Specialization, course 5 week 1",
          Pair("lstm_cell_forward", "lstm_cell_backward", ("xt", "a_prev", "c_prev", "parameters"),
               ("da_next", "dc_next", "cache"), ("a_next", "c_next", "yt_pred", "cache")),
          Pair("lstm_forward", "lstm_backward", ("x", "a0", "parameters"), ("da", "caches"),
               ("a", "y", "c", "caches"), None, ("h0",)),
          _dls_to, _dls_entries,
          names={"dWx[{g}]": "dW{G}[:, n_a:]", "dWh[{g}]": "dW{G}[:, :n_a]", "db[{g}]": "db{G}",
                 "dx": "dxt", "dprev_h": "da_prev", "dprev_c": "dc_prev", "dh0": "da0",
                 "dx@sequence": "dx"},
          words={**_STEP_WORDS, "dh_next": "da_prevt", "dc_next@sequence": "dc_prevt",
                 "dWx": "dW*[:, n_a:]", "dWh": "dW*[:, :n_a]", "db": "db*", "Wh": "W*[:, :n_a]",
                 "Wx": "W*[:, n_a:]", "h_{t-1}": "a<t-1>", "h_t": "a<t>", "c_{t-1}": "c<t-1>",
                 "c_t": "c<t>", "g": "cct", "dh": "da", "dz": "dgates"},
          letters=_DLS_LETTERS, forward_rows=("a_next", "c_next")),
    Style("notebook", "notebook 001's LSTM class",
          None, Pair("LSTM", "LSTM", ("input_size", "hidden_size"), ("dL_dh", "lr"), (),
                     None, ()),
          _notebook_to, _notebook_entries,
          names={"dWx[{g}]": "dW{G}[:, H:]", "dWh[{g}]": "dW{G}[:, :H]", "db[{g}]": "db{G}"},
          words={"dWx": "dW*[:, H:]", "dWh": "dW*[:, :H]", "db": "db*"},
          upstream="last", call=_notebook_call),
    Style("karpathy", "Karpathy's batched LSTM (lstm.py)",
          None, Pair("LSTM.forward", "LSTM.backward", ("X", "WLSTM", "c0", "h0"),
                     ("dHout_in", "cache"), ("Hout", "cn", "hn", "cache"),
                     ("dX", "dWLSTM", "dc0", "dh0"), ("h0", "c0")),
          _karpathy_to, _karpathy_entries,
          names={"dWx[{g}]": "dWLSTM[1:1+D, {g}]", "dWh[{g}]": "dWLSTM[1+D:, {g}]",
                 "db[{g}]": "dWLSTM[0, {g}]", "dx": "dX"},
          words={"dWx": "dWLSTM[1:1+D]", "dWh": "dWLSTM[1+D:]", "db": "dWLSTM[0]",
                 "Wx": "WLSTM[1:1+D]", "Wh": "WLSTM[1+D:]", "dz": "dIFOG", "dx": "dX"}),
    Style("torch", "a PyTorch-style loop (nn.LSTM's weights, batch first)",
          None, Pair("lstm_forward", "lstm_backward",
                     ("x", "h0", "c0", "weight_ih", "weight_hh", "bias_ih", "bias_hh"),
                     ("doutput", "cache"), ("output", "state", "cache"), None, ("h0", "c0")),
          _torch_to, _torch_entries,
          names={"dWx[{g}]": "weight_ih[{g}]", "dWh[{g}]": "weight_hh[{g}]",
                 "db[{g}]": "bias_ih[{g}]", "db_hh[{g}]": "bias_hh[{g}]", "dx": "x",
                 "dh0": "h0", "dc0": "c0"},
          words={"dWx": "weight_ih.grad", "dWh": "weight_hh.grad", "db": "bias_ih.grad",
                 "Wx": "weight_ih.T", "Wh": "weight_hh.T", "Wx.T": "weight_ih",
                 "Wh.T": "weight_hh", "dz": "dgates"},
          aliases={"b_hh": "b"}),
)}


def get_style(style: str | Style) -> Style:
    """The :class:`Style` named ``style`` (ValueError naming the styles otherwise)."""
    if isinstance(style, Style):
        return style
    if style not in STYLES:
        close = difflib.get_close_matches(str(style), STYLES, n=1)
        raise ValueError(f"style must be one of {', '.join(map(repr, STYLES))}, got {style!r}"
                         + (f"; did you mean {close[0]!r}?" if close else ""))
    return STYLES[style]


# ---------------------------------------------------------------- calling the student

def _params(func):
    """The names of ``func``'s parameters (bound methods and static methods as called), or
    None when it has no inspectable signature."""
    try:
        return [p.name for p in inspect.signature(func).parameters.values()
                if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    except (TypeError, ValueError):
        return None


def _fits(func, n, keywords=()):
    """Whether ``func`` can be called with ``n`` positional arguments (and ``keywords``)."""
    try:
        inspect.signature(func).bind(*range(n), **dict.fromkeys(keywords))
    except TypeError:
        return False
    except ValueError:                     # no signature (a builtin): let the call decide
        return True
    return True


def _which_style(func, role, kind):
    """The style whose ``role`` function (forward/backward) ``func``'s signature fits best."""
    names = _params(func) or []
    for style in STYLES.values():
        pair = style.step if kind == "step" else style.sequence
        for p in ([pair] if pair else []):
            args = p.forward_args if role == "forward" else p.backward_args
            if names[:len(args)] == list(args) or (
                    names and names[0] == args[0] and _fits(func, len(args))):
                return style.name
    for style in STYLES.values():          # the other kind's pair (a step given as sequence)
        pair = style.sequence if kind == "step" else style.step
        if pair and names[:2] == list((pair.forward_args if role == "forward"
                                       else pair.backward_args)[:2]):
            return style.name
    return None


def check_signature(func, role: str, style: Style, kind: str) -> None:
    """StyleMismatch when ``func`` cannot take the style's arguments (before any call), saying
    what it takes and which style that is."""
    pair = style.pair(kind)
    args = pair.forward_args if role == "forward" else pair.backward_args
    if style.call is not None or _fits(func, len(args) if role == "forward" else
                                       sum(1 for a in args if a != "lr")):
        return
    name = getattr(func, "__qualname__", getattr(func, "__name__", role))
    takes = ", ".join(_params(func) or ["?"])
    other = _which_style(func, role, kind)
    other = None if other == style.name else other
    expected = (f"; the {style.name} style's {role} takes ({', '.join(args)})"
                if other is None else "")
    raise StyleMismatch(f"{name} takes ({takes}){expected}", other)


def check_plain_backward(func, keywords=()) -> None:
    """StyleMismatch when a backward for ``check_gradients`` without ``style=`` cannot be
    called as ``backward(params, xs, upstream, **keywords)``, naming the style it is."""
    if _fits(func, 3, keywords):
        return
    name = getattr(func, "__qualname__", getattr(func, "__name__", "backward"))
    style = _which_style(func, "backward", "sequence")
    raise StyleMismatch(f"{name} takes ({', '.join(_params(func) or ['?'])})"
                        + ("" if style else ", not (params, xs, upstream)"), style)


def call_forward(style: Style, kind: str, forward, arrays: dict, sizes: dict) -> dict:
    """Run the student's forward on ``arrays`` (this library's layout, in the dtype to check):
    the student's arguments and outputs, by name (``"cache"`` among them)."""
    pair = style.pair(kind)
    user = _copies(style.to_user(arrays, kind, sizes))     # the student's to change at will
    if style.call is not None:
        return user
    check_signature(forward, "forward", style, kind)
    out = forward(*(user[a] for a in pair.forward_args))
    if not (isinstance(out, tuple) and len(out) == len(pair.forward_out)):
        raise ReturnedWrongly(f"{pair.forward} returned {_what(out)}, expected "
                              f"{len(pair.forward_out)} values: ({', '.join(pair.forward_out)})")
    return {**user, **dict(zip(pair.forward_out, out, strict=True))}


def _copies(user):
    """Fresh arrays (in dicts too), so that a student's in-place change cannot reach the
    checker's own arrays."""
    return {k: _copies(v) if isinstance(v, dict) else
            np.array(v, copy=True) if isinstance(v, np.ndarray) else v for k, v in user.items()}


def forward_outputs(style: Style, user: dict, sizes: dict) -> list:
    """The step forward's next_h and next_c, as this library holds them ``(B, H)``:
    ``[(student's name, float64 array), ...]``; ReturnedWrongly on a wrong shape."""
    B, H = sizes["B"], sizes["H"]
    flip = style.name == "dls"
    out = []
    for name in style.forward_rows:
        value = _array(user[name], (H, B) if flip else (B, H), f"{style.step.forward}'s {name}")
        if isinstance(value, str):
            raise ReturnedWrongly(value)
        out.append((name, value.T if flip else value))
    return out


def _what(value):
    if isinstance(value, (tuple, list)):
        return f"{len(value)} value{'s' if len(value) != 1 else ''}"
    return "None" if value is None else f"a {type(value).__name__}"


def _array(value, shape, name):
    """``value`` as a float64 array of ``shape``, or a sentence saying what it is instead."""
    if value is None:
        return None
    if not hasattr(value, "shape") and not isinstance(value, (list, tuple, float, int)):
        return f"{name}: a {type(value).__name__}, not an array"
    try:
        array = np.array(value, dtype=np.float64)
    except (TypeError, ValueError):
        return f"{name}: a {type(value).__name__} that is not an array of numbers"
    if array.shape != tuple(shape):
        return f"{name}: shape {array.shape}, expected {tuple(shape)}"
    return array


def call_backward(style: Style, kind: str, backward, user: dict, sizes: dict,
                  shapes: dict) -> tuple[dict, list]:
    """Run the student's backward after :func:`call_forward`; read what it returns.

    - shapes: this library's key -> shape of the arrays to fill (``"Wx" (D, 4H)``, ``"x"``...).
    Returns ``(got, notes)``: ``got[key]`` a float64 array in this library's layout (NaN in a
    block that could not be read), or None when nothing of it was returned; ``got[block name]``
    (``"dWx[f]"``) None or a sentence for each block that could not be read; ``notes``: keys
    returned that the style does not know.
    """
    pair = style.pair(kind)
    if style.call is not None:
        values = style.call(pair, backward, None, user)
    else:
        check_signature(backward, "backward", style, kind)
        out = backward(*(user[a] for a in pair.backward_args))
        values = _returned(pair, out)
    entries = style.entries(kind, sizes)
    known = {e.name for e in entries}
    notes = []
    unknown = [k for k in values if k not in known]
    if unknown:
        hints = [f"{k} (did you mean {m[0]}?)" if (m := difflib.get_close_matches(
            str(k), known, n=1)) else str(k) for k in unknown]
        notes.append(f"note: your {pair.backward} returned {', '.join(hints)}, which the "
                     f"{style.name} style does not know (it reads {', '.join(sorted(known))})")
    return _assemble(entries, values, shapes), notes


def _returned(pair, out):
    """The backward's outputs by name (a dict as it is, a tuple by ``backward_out``)."""
    if pair.backward_out is None:
        if not isinstance(out, dict):
            raise ReturnedWrongly(f"{pair.backward} returned {_what(out)}, expected a dict of "
                                  "gradients")
        return out
    if not (isinstance(out, (tuple, list)) and len(out) == len(pair.backward_out)):
        raise ReturnedWrongly(f"{pair.backward} returned {_what(out)}, expected "
                              f"{len(pair.backward_out)} values: ({', '.join(pair.backward_out)})")
    return dict(zip(pair.backward_out, out, strict=True))


def _assemble(entries, values, shapes):
    """This library's arrays from the student's entries (see :func:`call_backward`)."""
    got = {}
    for e in entries:
        value = _array(values.get(e.name), e.shape, e.name)
        for key, gate, extract in e.pieces:
            block = f"d{key}" + (f"[{gate}]" if gate else "")
            if key not in shapes:
                continue
            if not isinstance(value, np.ndarray):
                got[block] = value if value is not None else None
                continue
            if got.get(key) is None:
                got[key] = np.full(shapes[key], np.nan)
            H = shapes[key][-1] // 4
            where = (slice(None),) * (len(shapes[key]) - 1)
            target = got[key][(*where, slice(GATES.index(gate) * H, (GATES.index(gate) + 1) * H))] \
                if gate else got[key]
            target[...] = extract(value)
    for key in shapes:
        got.setdefault(key, None)
    return got


# ---------------------------------------------------------------- rows and sentences

def row_blocks(style: Style, keys) -> list[tuple[Block, str]]:
    """``(block, key)`` for each block to compare: ``block.param`` is the reference's array
    (an alias's original), ``key`` the one in ``got``; names as this library's rows
    (``"dWx[f]"``, ``"db_hh[f]"``, ``"dh0"``), for the diagnosis; :func:`rename_rows` after."""
    out = []
    for key in keys:
        ref = style.aliases.get(key, key)
        if ref in GATE_WIDE:
            for k, gate in enumerate(GATES):
                out.append((Block(f"d{key}[{gate}]", ref, gate,
                                  lambda a, k=k: np.split(a, 4, axis=-1)[k]), key))
        else:
            out.append((Block(f"d{key}", ref, None, lambda a: a), key))
    return out


def row_name(style: Style, kind: str, name: str) -> str:
    """A row's name in the style's terms: ``"dWx[f]"`` -> ``"dWf[:, n_a:]"`` (dls)."""
    match = re.fullmatch(r"(\w+)\[(\w)\]", name)
    template, gate = (f"{match.group(1)}[{{g}}]", match.group(2)) if match else (name, None)
    new = style.names.get(f"{template}@{kind}", style.names.get(template))
    if new is None:
        return name
    return new.replace("{g}", gate or "").replace("{G}", style.letters.get(gate, "") if gate
                                                  else "")


#: A block in the student's layout, from this library's (by array; ``@sequence``: there).
_T = np.transpose
SHOW = {
    "cs231n": {"x@sequence": lambda a: a.transpose(1, 0, 2)},
    "dls": {"Wx": _T, "Wh": _T, "b": lambda a: a[:, None], "x": _T, "prev_h": _T,
            "prev_c": _T, "h0": _T, "x@sequence": lambda a: a.transpose(2, 1, 0)},
    "notebook": {"Wx": _T, "Wh": _T, "b": lambda a: a[:, None]},
    "karpathy": {},
    "torch": {"Wx": _T, "Wh": _T, "x@sequence": lambda a: a.transpose(1, 0, 2)},
}


def rename_rows(style: Style, kind: str, rows: list, sizes: dict | None = None) -> list:
    """The rows with the student's names, their blocks shown in the student's layout; with
    ``sizes``, in the order the student returns them."""
    import dataclasses
    show = SHOW[style.name]
    if sizes is not None:
        place = [f"d{key}" + (f"[{gate}]" if gate else "")
                 for e in style.entries(kind, sizes) for key, gate, _ in e.pieces]
        rows = sorted(rows, key=lambda r: place.index(r.name) if r.name in place else len(place))
    out = []
    for r in rows:
        key = r.name[1:].split("[")[0]
        convert = show.get(f"{key}@{kind}", show.get(key if key in show else r.param))
        changes = {"name": row_name(style, kind, r.name)}
        if convert is not None:
            changes.update(expected=None if r.expected is None else convert(r.expected),
                           given=None if r.given is None else convert(r.given))
        out.append(dataclasses.replace(r, **changes))
    return out


def translate(style: Style, kind: str, sentences: list, rows: list, renamed: list) -> list:
    """The diagnosis's sentences in the style's terms: its row names (``rows`` as the
    diagnosis saw them -> ``renamed``), then its words (one pass: nothing is renamed twice);
    the worst entries' sentence written anew from the student's layout."""
    from .diagnosis import _worst_entries
    words = {k: v for k, v in style.words.items() if "@" not in k}
    words.update({k.split("@")[0]: v for k, v in style.words.items() if k.endswith("@" + kind)})
    words.update({r.name: n.name for r, n in zip(rows, renamed, strict=True)})
    if not words:
        return list(sentences)
    by_name = {r.name: n for r, n in zip(rows, renamed, strict=True)}
    pattern = re.compile(r"(?<![\w.])(" + "|".join(
        re.escape(k) for k in sorted(words, key=len, reverse=True)) + r")(?!\w)")
    out = []
    for sentence in sentences:
        worst = re.match(r"In (\S+), the worst entries", sentence)
        if worst and worst.group(1) in by_name and by_name[worst.group(1)].given is not None:
            out.append(_worst_entries(by_name[worst.group(1)]))
        else:
            out.append(pattern.sub(lambda m: words[m.group(1)], sentence))
    return out


# ---------------------------------------------------------------- finding the style

def _resolve(module, name):
    value = module
    for part in name.split("."):
        value = getattr(value, part, None)
    return value if callable(value) else None


def _classes(module):
    return [v for k, v in vars(module).items() if isinstance(v, type) and not k.startswith("_")
            and getattr(v, "__module__", None) == module.__name__]


def notebook_class(module):
    """A class with forward(self, inputs) and backward(self, dL_dh, ...), as notebook 001's."""
    for cls in _classes(module):
        forward, backward = getattr(cls, "forward", None), getattr(cls, "backward", None)
        if (callable(forward) and callable(backward) and len(_params(forward) or []) == 2
                and (_params(forward) or [""])[0] == "self"):
            return cls
    return None


def describe(style: Style) -> str:
    """The functions of ``style`` in a few words (``lstm_cell_forward, lstm_cell_backward;
    lstm_forward, lstm_backward``)."""
    if style.call is not None:
        return "a class with forward(inputs) and backward(dL_dh, lr)"
    return "; ".join(f"{p.forward}, {p.backward}" for p in (style.step, style.sequence) if p)


def detect(module) -> tuple[Style, dict]:
    """The style of the functions ``module`` defines: ``(style, {kind: (forward, backward,
    (their names))})`` for each pair found; ValueError when no style's names fit."""
    best = None
    for style in STYLES.values():
        found = {}
        for kind in ("step", "sequence"):
            pair = style.step if kind == "step" else style.sequence
            if pair is None:
                continue
            if style.call is not None:
                cls = notebook_class(module)
                if cls is not None:
                    found[kind] = (cls, cls, (cls.__name__,))
                continue
            forward, backward = _resolve(module, pair.forward), _resolve(module, pair.backward)
            if (forward and backward and _fits(forward, len(pair.forward_args))
                    and _fits(backward, len(pair.backward_args))
                    and (_params(forward) or [""])[0] != "self"):
                found[kind] = (forward, backward, (pair.forward, pair.backward))
        if found and (best is None or len(found) > len(best[1])):
            best = (style, found)
    if best is None:
        names = "; ".join(f"{s.name}: " + describe(s) for s in STYLES.values())
        raise ValueError(f"it defines none of the styles' functions ({names})")
    return best


# ---------------------------------------------------------------- the diagnosis, in style

def _is_echo(row, rows):
    """An alias row (PyTorch's bias_hh) that repeats its original exactly: no evidence."""
    if "_hh" not in row.name or row.given is None:
        return False
    original = row.name.replace("_hh", "")
    return any(r.name == original and r.given is not None and np.array_equal(r.given, row.given)
               for r in rows)


def diagnose_in_style(style: Style, kind: str, rows: list, diagnose: Callable,
                      **kwargs) -> list[str]:
    """The sentences of ``diagnose`` (the one diagnosis) for a styled check, in the style's
    terms. Arrays that could not be read are named first, in the student's names and shapes;
    for a sequence, dx and the initial states are left out when a weight is wrong (they follow
    from it), and so is a second bias that repeats the first."""
    from .diagnosis import shape_mistake
    notes = kwargs.pop("notes", ())
    unusable = [r for r in rows if r.status in ("missing", "bad shape")]
    out = []
    if unusable:
        said = dict.fromkeys(r.problem if r.status == "bad shape"
                             else f"{row_name(style, kind, r.name).split('[')[0]} missing"
                             for r in unusable)
        why = [s for s in (shape_mistake(problem.split(":")[0], problem) for problem in said)
               if s]
        instead = {meant: given for given, meant in
                   re.findall(r"(\S+) \(did you mean (\S+)\?\)", " ".join(notes))}
        missing = [p.split(" ")[0] for p in said if p.endswith(" missing")]
        why += [f"Your backward returned {instead[k]} where the {style.name} style reads {k}: "
                f"return it as {k}." for k in missing if k in instead]
        said = (f"Your backward's gradients could not be compared ({'; '.join(said)}). "
                f"Return every gradient the {style.name} style reads, each with the shape "
                "given.")
        out.append(" ".join([said, *why]))
    usable = [r for r in rows if r not in unusable and not _is_echo(r, rows)]
    if kind == "sequence" and any(not r.ok and r.param in GATE_WIDE for r in usable):
        usable = [r for r in usable if r.param in GATE_WIDE]
    out = translate(style, kind, out, [], [])
    if not any(r.status == "WRONG" for r in usable) and kwargs.get("loss") is None:
        return out
    sentences = diagnose(usable, kind=kind, **kwargs)
    return out + translate(style, kind, sentences, usable, rename_rows(style, kind, usable))
