"""A checkpoint written by the trainer before train/ was re-laid (issue 21) loads, and resumes
bit for bit. The files in tests/data/before_relay/ were made by its make.py (SGD with a
learning-rate decay; Adam with truncated BPTT, a carried state and --patience), each stopped at
step 7, between the evaluations of steps 5 and 10.

Resumed by today's command line, each ends bit for bit where today's :func:`train.fit` ends when
it continues, in memory, from the state the file holds (parameters, optimizer buffers, carried
state, the window of losses since step 5, the best of step 5): the file holds the whole state.
And it ends on the trajectory of an uninterrupted run of today's trainer: bit for bit on the
machine that wrote the files; elsewhere the BLAS kernels round steps 1-7 differently, by about
one ulp, so the comparison allows a few hundred (``2**10`` eps, relative).
"""
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

import lstm_ag
from train.checkpoint import task_of
from train.cli import main
from train.loop import fit, load_checkpoint

DATA = Path(__file__).parent / "data" / "before_relay"
#: The runs whose checkpoints (at step 7) are in DATA, by its make.py.
RUNS = {
    "sgd": ["sine", "--steps", "20", "--hidden", "4", "--batch", "8", "--seq-len", "10",
            "--train-size", "32", "--eval-every", "5", "--method", "autograd",
            "--lr-decay", "0.01"],
    "adam_tbptt": ["sine", "--steps", "20", "--hidden", "4", "--batch", "8", "--seq-len", "12",
                   "--train-size", "32", "--eval-every", "5", "--optimizer", "adam",
                   "--tbptt", "4", "--patience", "3"],
}


def _timeless(history):
    return [{k: v for k, v in row.items() if k not in ("seconds", "steps_per_second")}
            for row in history]


def _same_run(a, b, tol=None):
    """Assert that the run directories ``a`` and ``b`` hold the same model.npz and best.npz
    (bit for bit, or within ``tol`` relative) and the same histories but for timings."""
    for file in ("model.npz", "best.npz"):
        got, got_meta = lstm_ag.load(a / file)
        want, want_meta = lstm_ag.load(b / file)
        assert sorted(got) == sorted(want)
        for key in want:
            if tol is None:
                assert np.array_equal(got[key], want[key]), (file, key)
            else:
                np.testing.assert_allclose(got[key], want[key], rtol=tol,
                                           atol=tol * np.abs(want[key]).max())
        assert got_meta["step"] == want_meta["step"] == (20 if file == "model.npz" else
                                                         want_meta["step"])
        if tol is None:
            assert _timeless(got_meta["history"]) == _timeless(want_meta["history"])
        else:                             # the window's losses count in step 10's row
            for row, want_row in zip(got_meta["history"], want_meta["history"], strict=True):
                for key, value in _timeless([want_row])[0].items():
                    expected = value if value is None else pytest.approx(value, rel=tol)
                    assert row[key] == expected, (file, key, row["step"])
    metrics = [json.loads((run / "metrics.json").read_text()) for run in (a, b)]
    assert [m["status"] for m in metrics] == ["done", "done"]
    assert metrics[0]["best_step"] == metrics[1]["best_step"]


@pytest.mark.parametrize("name", sorted(RUNS))
def test_a_checkpoint_of_the_old_trainer_resumes_bit_for_bit(name, tmp_path, capsys):
    old = load_checkpoint(DATA / name / "model.npz")
    assert old.progress.step == 7 and len(old.progress.losses) == 2
    assert (old.progress.carry is not None) == (name == "adam_tbptt")
    resumed = tmp_path / "resumed"
    shutil.copytree(DATA / name, resumed)
    assert main(["sine", "--out", str(resumed), "--resume", "--quiet"]) == 0
    in_memory = tmp_path / "in_memory"
    in_memory.mkdir()
    shutil.copy(DATA / name / "best.npz", in_memory / "best.npz")
    with open(os.devnull, "w") as log:
        result = fit(old.params, task_of(DATA / name / "model.npz", old), old.config,
                     start=old.progress, checkpoint=in_memory / "model.npz",
                     metrics=in_memory / "metrics.json", log=log)
    assert result.status == "done"
    _same_run(resumed, in_memory)
    reference = tmp_path / "reference"
    assert main([*RUNS[name], "--out", str(reference), "--quiet"]) == 0
    capsys.readouterr()
    _same_run(resumed, reference, tol=2**10 * np.finfo(np.float64).eps)
