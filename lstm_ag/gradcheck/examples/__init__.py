"""Correct LSTM backwards written as students write them, one file per style the checker
knows; ``lstm-ag-gradcheck --example NAME`` prints one, to start from or to compare with.

* ``cs231n_step``: CS231n's ``lstm_step_forward`` / ``lstm_step_backward`` and the sequence
  pair ``lstm_forward`` / ``lstm_backward`` (batch-major, gate order i, f, o, g);
* ``sequence_loop``: a sequence backward on this library's dict (``backward_all``,
  ``backward_last``, ``backward_mse``);
* ``notebook_001``: notebook 001's class (column vectors, one matrix per gate on
  ``[h; x]``), as the notebook has it (``LSTMNotebook``, with its ``return h`` in the loop)
  and fixed (``LSTM``).

The checker's tests plant one-line bugs in copies of these files (``tests/students/mutate.py``).
"""
import pathlib

__all__ = ["EXAMPLES", "source"]

HERE = pathlib.Path(__file__).resolve().parent

#: Short name -> file name.
EXAMPLES = {"cs231n": "cs231n_step.py", "sequence": "sequence_loop.py",
            "notebook": "notebook_001.py"}


def source(name: str) -> str:
    """The text of the example ``name`` (a key of :data:`EXAMPLES`)."""
    if name not in EXAMPLES:
        raise ValueError(f"example must be one of {', '.join(EXAMPLES)}, got {name!r}")
    return (HERE / EXAMPLES[name]).read_text()
