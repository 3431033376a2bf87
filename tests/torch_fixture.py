"""The committed PyTorch fixture and the script that makes it, for the tests that read them
(``test_torch_fixture.py``: one layer; ``test_layers_torch.py``: stacked and bidirectional)."""
import importlib.util
import os

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")
FIXTURE = os.path.join(DATA, "torch_lstm.npz")


def _load_script():
    spec = importlib.util.spec_from_file_location(
        "make_torch_fixture", os.path.join(DATA, "make_torch_fixture.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)          # imports numpy only; torch inside build()
    return module


#: ``tests/data/make_torch_fixture.py`` as a module: its CASES, LAYER_CASES and build().
SCRIPT = _load_script()
