"""Tolerances for comparing two computations that round differently.

Two evaluations of the same sums of products in another order (another BLAS kernel, another
blocking, one batch row against the whole batch, a traced against a plain loop) agree to a few
units of rounding per term and per step, relative to the size of what they sum (Higham's
gamma_n bound, n = terms * steps). OpenBLAS picks its kernel from the CPU (Haswell, SkylakeX,
...), so no test may ask for one exact digit of such a sum: these bounds hold on every kernel
and thread count. A real mistake in this project's mathematics moves results by 1e-8 or more,
so the bounds (1e-14 to 1e-12 at the tests' sizes) stay thousands of times below it.
"""
import numpy as np
from numpy.testing import assert_allclose

SAFETY = 8      # units of rounding per product: a margin for the accumulation order


def rounding(terms, steps=1, dtype=np.float64):
    """Relative bound between two evaluations of ``steps`` chained sums of ``terms`` products."""
    return SAFETY * terms * steps * float(np.finfo(dtype).eps)


def assert_close(got, want, rtol, err_msg=""):
    """``got`` equals ``want`` to ``rtol`` relative to ``want``'s largest entry (normwise).

    An entry near zero carries the rounding of the large terms that cancelled in it, so the
    bound scales with the array's size, not with the entry's own.
    """
    want = np.asarray(want)
    scale = float(np.max(np.abs(want))) if want.size else 0.0
    assert_allclose(got, want, rtol=rtol, atol=rtol * scale, err_msg=err_msg)
