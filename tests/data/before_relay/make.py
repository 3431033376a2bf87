"""How tests/data/before_relay/ was made, before issue 21 re-laid train/: the two runs of
``RUNS`` (tests/test_train_resume_before.py), each stopped at step 7, between evaluations, by
the trainer of that day. From the repository's root:
``PYTHONPATH=.:tests python tests/data/before_relay/make.py tests/data/before_relay``."""
import os
import sys

from test_train_resume_before import RUNS

from train.cli import main


def _stop_at_7(step, params, info):
    if step == 7:
        raise KeyboardInterrupt


if __name__ == "__main__":
    for name, argv in RUNS.items():
        out = os.path.join(sys.argv[1], name)
        print(name, main([*argv, "--out", out, "--quiet", "--overwrite"], callback=_stop_at_7))
        os.remove(os.path.join(out, ".lock"))
