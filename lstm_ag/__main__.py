"""``python -m lstm_ag``: the gradient checker, ``lstm-ag-gradcheck`` (the trainer is
``lstm-ag-train``, or ``python -m lstm_ag_train``)."""
import sys

from .gradcheck.__main__ import main

if __name__ == "__main__":
    sys.exit(main())
