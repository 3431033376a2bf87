"""The gradient checker: a backward pass against autograd and finite differences, gate by gate.

::

    report = lstm_ag.check_gradients(params, xs, targets, backward=my_backward)
    print(report)            # one row per parameter and gate
    report.ok, report.worst, report.first_bad_length

* :mod:`lstm_ag.gradcheck.check`: the comparison (:func:`check_gradients`);
* :mod:`lstm_ag.gradcheck.report`: what it returns (:class:`GradientReport`, one row per block);
* :mod:`lstm_ag.gradcheck.__main__`: the command line ``lstm-ag-gradcheck``.
"""
from .check import FD_EPS, TOLERANCES, check_gradients
from .report import GradientReport, Row

__all__ = ["check_gradients", "GradientReport", "Row", "TOLERANCES", "FD_EPS"]
