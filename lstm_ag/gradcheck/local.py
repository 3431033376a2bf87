"""Mistakes in a gate's local derivative, as students write them, for the checker to simulate.

Each mistake is a sentence and the local derivatives it uses in place of the right ones, from
a step's activations ``a`` (``i, f, g, o, tanh_c, c, c_prev``, each ``(..., B, H)``):
``{"i" | "f" | "g": dc_t/dz, "o": dh_t/dz_o, "h_c": dh_t/dc_t}`` (the right ones are
:func:`lstm_ag.bptt.local_derivatives`'). The checker runs the hand backward with them
(:func:`lstm_ag.bptt.lstm_step_backward`'s cache), so nothing of the BPTT is written again.
"""
from __future__ import annotations

import numpy as np
from scipy.special import expit

__all__ = ["LOCAL_MISTAKES", "local_mistakes"]


def _twice(y):
    """sigmoid(y) * (1 - sigmoid(y)): a sigmoid's derivative taken of its output again."""
    return expit(y) * (1 - expit(y))


def _sig(gate, what, wrong):
    return (f"Your dz_{gate} {what}: dz_{gate} needs the sigmoid's derivative {gate} * (1 - "
            f"{gate}) ({gate} is sigmoid(z_{gate})), yours has {wrong}.")


def _tanh_for(gate):
    return (f"Your dz_{gate} uses tanh's derivative 1 - {gate}**2 where the sigmoid's "
            f"{gate} * (1 - {gate}) is needed: {gate} is sigmoid(z_{gate}).")


#: ``(sentence, alternatives)``: ``alternatives(a)`` the local derivatives that mistake uses.
LOCAL_MISTAKES = [
    (_sig("o", "is missing the sigmoid's derivative", "no factor of it"),
     lambda a: {"o": a["tanh_c"]}),
    (_sig("o", "has o where o * (1 - o) is needed", "o alone"),
     lambda a: {"o": a["tanh_c"] * a["o"]}),
    (_sig("o", "has 1 - o where o * (1 - o) is needed", "1 - o alone"),
     lambda a: {"o": a["tanh_c"] * (1 - a["o"])}),
    (("Your dz_o uses c where tanh(c) is needed: h = o * tanh(c), so dz_o = dh * tanh(c) * o "
     "* (1 - o), not dh * c * o * (1 - o)."),
     lambda a: {"o": a["c"] * a["o"] * (1 - a["o"])}),
    ("Your dz_o is missing tanh(c): h = o * tanh(c), so dz_o = dh * tanh(c) * o * (1 - o).",
     lambda a: {"o": a["o"] * (1 - a["o"])}),
    (_sig("i", "is missing the sigmoid's derivative", "no factor of it"),
     lambda a: {"i": a["g"]}),
    (_sig("i", "has i where i * (1 - i) is needed", "i alone"),
     lambda a: {"i": a["g"] * a["i"]}),
    (_sig("i", "has 1 - i where i * (1 - i) is needed", "1 - i alone"),
     lambda a: {"i": a["g"] * (1 - a["i"])}),
    (("Your dz_i multiplies dc by i where g is needed: c = f * c_prev + i * g, so "
     "dz_i = dc * g * i * (1 - i)."),
     lambda a: {"i": a["i"] * a["i"] * (1 - a["i"])}),
    (_sig("f", "is missing the sigmoid's derivative", "no factor of it"),
     lambda a: {"f": a["c_prev"]}),
    (_sig("f", "has f where f * (1 - f) is needed", "f alone"),
     lambda a: {"f": a["c_prev"] * a["f"]}),
    (("Your dz_f uses tanh's derivative 1 - f**2 where the sigmoid's f * (1 - f) is needed: "
     "f is sigmoid(z_f), so dz_f = dc * c_prev * f * (1 - f)."),
     lambda a: {"f": a["c_prev"] * (1 - a["f"] ** 2)}),
    (("Your dz_f uses c_t where c_{t-1} is needed: c = f * c_prev + i * g, so "
     "dz_f = dc * c_prev * f * (1 - f), with the cell state the step started from."),
     lambda a: {"f": a["c"] * a["f"] * (1 - a["f"])}),
    (("Your dz_g uses the sigmoid's derivative g * (1 - g) where tanh's 1 - g**2 is needed: "
     "g is tanh(z_g), so dz_g = dc * i * (1 - g**2)."),
     lambda a: {"g": a["i"] * a["g"] * (1 - a["g"])}),
    (("Your dz_g has 1 - g where 1 - g**2 is needed (the square is missing): g is tanh(z_g), "
     "so dz_g = dc * i * (1 - g**2)."),
     lambda a: {"g": a["i"] * (1 - a["g"])}),
    (("Your dz_g is missing tanh's derivative 1 - g**2: g is tanh(z_g), so "
     "dz_g = dc * i * (1 - g**2)."),
     lambda a: {"g": a["i"]}),
    (("Your dz_g takes the derivative of tanh(g): g is already tanh(z_g), so its derivative "
     "is 1 - g**2, not 1 - tanh(g)**2."),
     lambda a: {"g": a["i"] * (1 - np.tanh(a["g"]) ** 2)}),
    *(((f"Your dz_{gate} takes the derivative of sigmoid({gate}): {gate} is already "
       f"sigmoid(z_{gate}), so its derivative is {gate} * (1 - {gate}), not sigmoid({gate}) * "
       f"(1 - sigmoid({gate}))."),
       lambda a, gate=gate, k=k: {gate: a[k] * _twice(a[gate])})
      for gate, k in (("i", "g"), ("f", "c_prev"), ("o", "tanh_c"))),
    ("Your dz_i is missing g: c = f * c_prev + i * g, so dz_i = dc * g * i * (1 - i).",
     lambda a: {"i": a["i"] * (1 - a["i"])}),
    ("Your dz_f is missing c_prev: c = f * c_prev + i * g, so dz_f = dc * c_prev * f * (1 - f).",
     lambda a: {"f": a["f"] * (1 - a["f"])}),
    ("Your dz_g is missing i: c = f * c_prev + i * g, so dz_g = dc * i * (1 - g**2).",
     lambda a: {"g": 1 - a["g"] ** 2}),
    (_tanh_for("i"), lambda a: {"i": a["g"] * (1 - a["i"] ** 2)}),
    (_tanh_for("o"), lambda a: {"o": a["tanh_c"] * (1 - a["o"] ** 2)}),
    (("Your gradients of the weights miss every gate's derivative: they multiply the gradient "
      "of the gates' outputs (i, f, g, o) where the gradient of their pre-activations is "
      "needed, dz = d(gate) * (its nonlinearity's derivative: y * (1 - y), 1 - g**2)."),
     lambda a: {"i": a["g"], "f": a["c_prev"], "g": a["i"], "o": a["tanh_c"]}),
    ("Your dc is missing o: h = o * tanh(c), so dc = dc_next + dh * o * (1 - tanh(c)**2).",
     lambda a: {"h_c": 1 - a["tanh_c"] ** 2}),
    (("Your gate derivatives use y where the sigmoid's y * (1 - y) is needed (i, f and o "
     "each miss the factor 1 - y): the derivative of y = sigmoid(z) is y * (1 - y)."),
     lambda a: {"i": a["g"] * a["i"], "f": a["c_prev"] * a["f"],
                "o": a["tanh_c"] * a["o"]}),
    (("Your dc has 1 - tanh(c) where 1 - tanh(c)**2 is needed (the square is missing): "
     "dc = dc_next + dh * o * (1 - tanh(c)**2)."),
     lambda a: {"h_c": a["o"] * (1 - a["tanh_c"])}),
    (("Your dc is missing tanh's derivative: h = o * tanh(c), so "
     "dc = dc_next + dh * o * (1 - tanh(c)**2), not dc_next + dh * o."),
     lambda a: {"h_c": a["o"]}),
]


def local_mistakes(a: dict) -> list[tuple[str, dict]]:
    """``(sentence, {name: derivative})`` for every mistake of :data:`LOCAL_MISTAKES`, from the
    activations ``a`` (module docstring)."""
    return [(sentence, alternatives(a)) for sentence, alternatives in LOCAL_MISTAKES]
