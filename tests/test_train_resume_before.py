"""A checkpoint written by the trainer before train/ was re-laid (issue 21) loads, and resumes
bit for bit: the resumed run ends with the parameters, history and best of an uninterrupted
run of today's trainer. The files in tests/data/before_relay/ were made by its make.py (SGD
with a learning-rate decay; Adam with truncated BPTT, a carried state and --patience), each
stopped at step 7, between the evaluations of steps 5 and 10."""
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import lstm_ag
from train.cli import main
from train.loop import load_checkpoint

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


@pytest.mark.parametrize("name", sorted(RUNS))
def test_a_checkpoint_of_the_old_trainer_resumes_bit_for_bit(name, tmp_path, capsys):
    old = load_checkpoint(DATA / name / "model.npz")
    assert old.progress.step == 7 and len(old.progress.losses) == 2
    assert (old.progress.carry is not None) == (name == "adam_tbptt")
    resumed = tmp_path / "resumed"
    shutil.copytree(DATA / name, resumed)
    assert main(["sine", "--out", str(resumed), "--resume", "--quiet"]) == 0
    reference = tmp_path / "reference"
    assert main([*RUNS[name], "--out", str(reference), "--quiet"]) == 0
    capsys.readouterr()
    for file in ("model.npz", "best.npz"):
        got, got_meta = lstm_ag.load(resumed / file)
        want, want_meta = lstm_ag.load(reference / file)
        assert sorted(got) == sorted(want)
        for key in want:
            assert np.array_equal(got[key], want[key]), (file, key)
        assert got_meta["step"] == want_meta["step"]
        assert _timeless(got_meta["history"]) == _timeless(want_meta["history"])
    metrics = [json.loads((run / "metrics.json").read_text()) for run in (resumed, reference)]
    assert [m["status"] for m in metrics] == ["done", "done"]
    assert metrics[0]["best_step"] == metrics[1]["best_step"]
