"""The gradient checker: a backward against autograd and finite differences, and what is wrong.

::

    report = lstm_ag.check_gradients(params, xs, targets, backward=my_backward)
    report = lstm_ag.check_step(lstm_step_forward, lstm_step_backward, gate_order="ifog")
    report = lstm_ag.check_step(lstm_cell_forward, lstm_cell_backward, style="dls")
    report = lstm_ag.check_gradients(params, xs, forward=lstm_forward,
                                     backward=lstm_backward, style="dls")
    print(report)            # the diagnosis in plain sentences, then one row per block
    report.ok, report.worst, report.first_bad_length, report.diagnosis

* :mod:`~lstm_ag.gradcheck.compare`: blocks, errors, finite differences, tolerances;
* :mod:`~lstm_ag.gradcheck.adapters`: users' layouts, gate orders and return values;
* :mod:`~lstm_ag.gradcheck.styles`: the styles courses teach (cs231n, dls, notebook,
  karpathy, torch), their names, shapes and signatures, as data;
* :mod:`~lstm_ag.gradcheck.check`: a sequence backward (:func:`check_gradients`);
* :mod:`~lstm_ag.gradcheck.step`: a CS231n-style step pair (:func:`check_step`);
* :mod:`~lstm_ag.gradcheck.diagnosis`: from the rows to sentences;
* :mod:`~lstm_ag.gradcheck.report`: what both return (:class:`GradientReport`);
* ``python -m lstm_ag.gradcheck`` (``lstm-ag-gradcheck``): the command line.
"""
from .check import UPSTREAMS, check_gradients
from .compare import FD_EPS, TOLERANCES, Row
from .report import GradientReport
from .step import check_step
from .styles import STYLES

__all__ = ["check_gradients", "check_step", "GradientReport", "Row", "TOLERANCES", "FD_EPS",
           "UPSTREAMS", "STYLES"]
