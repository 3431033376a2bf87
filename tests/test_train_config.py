"""TrainConfig: defaults per task, validation, a checkpoint round trip, what resume keeps."""
import dataclasses

import numpy as np
import pytest

import lstm_ag
from train.config import (
    ADAM_LR,
    FIXED_ON_RESUME,
    PER_TASK,
    TASK_DEFAULTS,
    ConfigError,
    TrainConfig,
)
from train.data import TASKS
from train.loop import Progress, load_checkpoint, save_checkpoint


def test_adam_takes_its_own_default_learning_rate():
    assert TrainConfig(optimizer="adam").lr == ADAM_LR
    assert TrainConfig(optimizer="adam", lr=0.5).lr == 0.5
    assert TrainConfig(task="series", data="s.csv", optimizer="adam").lr == ADAM_LR


def test_defaults_are_the_contracts():
    config = TrainConfig()
    assert config.task == "sine" == next(iter(TASKS))
    assert config.method == "fast" == lstm_ag.METHODS[0]
    assert config.optimizer == "sgd" and config.clip > 0 and 0 < config.momentum < 1


@pytest.mark.parametrize("name", list(TASKS))
def test_per_task_defaults_come_from_the_table_and_the_generator(name):
    config = TrainConfig(task=name)
    for setting, value in TASK_DEFAULTS[name].items():
        assert getattr(config, setting) == value, setting
    n_train = TASKS[name](10).train_x.shape[1]            # the generator's own default
    assert config.train_size == n_train
    assert TrainConfig(task=name, lr=0.01, train_size=99).lr == 0.01       # given wins
    assert config.make_task().train_x.shape == (config.seq_len, n_train,
                                                 config.make_task().input_size)


def test_the_table_holds_the_per_task_settings_and_nothing_else():
    assert PER_TASK == ("steps", "seq_len", "batch", "train_size", "lr", "eval_every",
                        "patience")
    for name in TASK_DEFAULTS:
        assert set(TASK_DEFAULTS[name]) == set(PER_TASK) - {"train_size"}, name
    assert set(TASK_DEFAULTS) == set(TASKS) | {"series"}


def test_fixed_on_resume_is_derived_from_the_field_metadata():
    flagged = tuple(f.name for f in dataclasses.fields(TrainConfig)
                    if f.metadata["fixed_on_resume"])
    assert flagged == FIXED_ON_RESUME
    assert set(FIXED_ON_RESUME) == {"task", "hidden", "layers", "bidirectional", "seq_len",
                                    "tbptt", "batch", "train_size", "lr", "lr_decay",
                                    "momentum", "clip", "optimizer", "seed", "data", "column",
                                    "diff", "val_frac", "test_frac", "season",
                                    "seasonal_diff"}


def test_resumed_refuses_a_changed_fixed_setting_and_takes_the_others():
    saved = TrainConfig(task="counting", steps=100, lr=1)
    with pytest.raises(ConfigError, match=r"^momentum 0.5 differs from the checkpoint's "
                                          r"momentum=0.9$") as err:
        saved.resumed(steps=200, momentum=0.5)
    assert err.value.name == "momentum"
    resumed = saved.resumed(steps=200, eval_every=7, method="bptt", lr=1.0, seq_len=20)
    assert (resumed.steps, resumed.eval_every, resumed.method) == (200, 7, "bptt")
    assert dataclasses.replace(resumed, steps=100, eval_every=100, method="fast") == saved


def test_a_config_round_trips_through_a_checkpoint(tmp_path):
    config = TrainConfig(task="adding", steps=7, hidden=3, seq_len=6, batch=5, train_size=40,
                         lr=0.25, lr_decay=0.5, momentum=0.0, clip=0.0, optimizer="sgd",
                         method="bptt", seed=11, eval_every=2)
    task = config.make_task()
    params = config.init_params(task)
    velocity = {k: np.zeros_like(v) for k, v in params.items()}       # SGD's buffers
    path = save_checkpoint(tmp_path / "m.npz", params, Progress(step=3, velocity=velocity),
                           config, task.spec)
    _, meta = lstm_ag.load(path)
    assert meta["config"] == dataclasses.asdict(config)                # stored whole
    loaded = load_checkpoint(path)
    assert loaded.config == config and isinstance(loaded.config.lr, float)
    assert loaded.progress.step == 3 and loaded.task_spec == task.spec
    assert TrainConfig.from_dict(config.to_dict()) == config


@pytest.mark.parametrize("change, match", [
    (dict(extra=1), r"unknown \['extra'\], missing \[\]"),
    (dict(drop="lr"), r"unknown \[\], missing \['lr'\]"),
    (dict(momentum=1.0), r"momentum must be in \[0, 1\), got 1.0"),
    (dict(hidden="32"), "hidden must be an integer, got '32'"),
])
def test_a_checkpoint_with_a_bad_config_is_refused_naming_the_file(tmp_path, change, match):
    data = TrainConfig(hidden=4).to_dict()
    data.pop(change.pop("drop", None), None)
    data.update(change)
    path = tmp_path / "m.npz"
    lstm_ag.save(path, lstm_ag.init_params(1, 4, 1), config=data, task_spec={}, step=0,
                 velocity=None, history=[], seconds=0.0)
    with pytest.raises(lstm_ag.CheckpointError, match=f"m.npz: its config is not valid: .*{match}"):
        load_checkpoint(path)


@pytest.mark.parametrize("settings, name, message", [
    (dict(task="music"), "task", ("must be one of 'sine', 'counting', 'adding', 'series', "
                                  "got 'music'")),
    (dict(steps=0), "steps", "must be >= 1, got 0"),
    (dict(steps=2.0), "steps", "must be an integer, got 2.0"),
    (dict(hidden=True), "hidden", "must be an integer, got True"),
    (dict(seq_len=1), "seq_len", "must be >= 2, got 1"),
    (dict(lr=0), "lr", "must be > 0, got 0.0"),
    (dict(lr=float("inf")), "lr", "must be a finite number, got inf"),
    (dict(lr_decay=-0.1), "lr_decay", "must be >= 0, got -0.1"),
    (dict(momentum=1), "momentum", "must be in [0, 1), got 1.0"),
    (dict(clip=float("nan")), "clip", "must be a finite number, got nan"),
    (dict(method="magic"), "method", "must be one of 'fast', 'bptt', 'autograd', got 'magic'"),
    (dict(optimizer="rmsprop"), "optimizer", ("must be one of 'sgd', 'adam', 'lbfgs', got "
                                              "'rmsprop'")),
    (dict(patience=-1), "patience", "must be >= 0, got -1"),
    (dict(train_size=0), "train_size", "must be >= 1, got 0 (0, every window: series only)"),
    (dict(task="series"), "data", "is needed by the series task: --data FILE"),
    (dict(diff=True), "diff", "is a setting of the series task only"),
    (dict(diff=1), "diff", "must be True or False, got 1"),
    (dict(column=3), "column", "must be a string, got 3"),
    (dict(val_frac=0.5, test_frac=0.5), "test_frac",
     "0.5 with val_frac 0.5 leaves no training part"),
    (dict(test_frac=1.0), "test_frac", "must be in (0, 1), got 1.0"),
    (dict(seed=-1), "seed", "must be >= 0, got -1"),
    (dict(batch=65, train_size=64), "batch", "65 exceeds the training set (64 sequences)"),
])
def test_bad_values_are_named(settings, name, message):
    with pytest.raises(ConfigError) as err:
        TrainConfig(**settings)
    assert (err.value.name, err.value.problem) == (name, message)
    assert str(err.value) == f"{name} {message}"


def test_numbers_are_stored_as_plain_ints_and_floats_and_the_config_is_frozen():
    config = TrainConfig(hidden=np.int64(4), lr=np.float32(0.5), momentum=0)
    assert type(config.hidden) is int and type(config.lr) is float
    assert type(config.momentum) is float
    assert TrainConfig(batch=64, optimizer="lbfgs", train_size=16).batch == 64  # SGD only
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.lr = 1.0
