"""Correct LSTM backwards written as students write them, one file per style the checker
knows; ``lstm-ag-gradcheck --example NAME`` prints one, to start from or to compare with.

* ``cs231n_step``: CS231n's ``lstm_step_forward`` / ``lstm_step_backward`` and the sequence
  pair ``lstm_forward`` / ``lstm_backward`` (batch-major, gate order i, f, o, g);
* ``sequence_loop``: a sequence backward on this library's dict (``backward_all``,
  ``backward_last``, ``backward_mse``);
* ``notebook_001``: notebook 001's class (column vectors, one matrix per gate on
  ``[h; x]``), as the notebook has it (``LSTMNotebook``, with its ``return h`` in the loop)
  and fixed (``LSTM``).
* ``dls_cell``, ``dls_sequence``: deeplearning.ai's course 5 (batch in columns, one matrix
  per gate on ``[a_prev; xt]``): the cell pair, and the cell pair with ``lstm_forward`` /
  ``lstm_backward``;
* ``karpathy``: Karpathy's ``LSTM`` class (one ``WLSTM (1 + D + H, 4H)``, gates i, f, o, g);
* ``torch_loop``: a PyTorch-style loop (``weight_ih (4H, D)``, ``weight_hh (4H, H)``, two
  biases, batch first).

The checker's tests plant one-line bugs in copies of these files (``tests/students/mutate.py``).
"""
import pathlib

__all__ = ["EXAMPLES", "source"]

HERE = pathlib.Path(__file__).resolve().parent

#: Short name -> file name.
EXAMPLES = {"cs231n": "cs231n_step.py", "sequence": "sequence_loop.py",
            "notebook": "notebook_001.py", "dls": "dls_sequence.py", "dls-cell": "dls_cell.py",
            "karpathy": "karpathy.py", "torch": "torch_loop.py"}


def source(name: str) -> str:
    """The text of the example ``name`` (a key of :data:`EXAMPLES`)."""
    if name not in EXAMPLES:
        raise ValueError(f"example must be one of {', '.join(EXAMPLES)}, got {name!r}")
    return (HERE / EXAMPLES[name]).read_text()
