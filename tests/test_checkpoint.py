"""lstm_ag.save / lstm_ag.load: round trip, no pickle ever, atomic writes, errors name the file."""
import json
import os
import pickle

import numpy as np
import pytest

import lstm_ag
from lstm_ag import CheckpointError
from lstm_ag.checkpoint import HEADER


def _params(dtype=np.float64):
    return lstm_ag.init_params(2, 3, 1, seed=5, dtype=dtype)


def _assert_same(a, b):
    assert list(a) == list(b)
    for key in a:
        assert a[key].dtype == b[key].dtype, key
        assert a[key].shape == b[key].shape, key
        assert np.array_equal(a[key], b[key]), key


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_round_trip_is_bit_exact_with_nested_metadata(tmp_path, dtype):
    params = _params(dtype)
    velocity = {k: np.random.default_rng(1).standard_normal(v.shape).astype(dtype)
                for k, v in params.items()}
    path = tmp_path / "model.npz"
    returned = lstm_ag.save(path, params, step=20, config={"hidden": 3, "lr": 0.1, "tag": None},
                            optimizer={"name": "sgd", "velocity": velocity},
                            history=[{"step": 10, "val_mse": 0.5}], pair=(1, 2),
                            scalar=np.float64(2.5))
    assert returned == os.fspath(path)
    loaded, meta = lstm_ag.load(path)
    _assert_same(params, loaded)
    _assert_same(velocity, meta["optimizer"]["velocity"])
    assert meta["step"] == 20 and meta["config"] == {"hidden": 3, "lr": 0.1, "tag": None}
    assert meta["history"] == [{"step": 10, "val_mse": 0.5}]
    assert meta["pair"] == [1, 2]                 # tuples come back as lists
    assert meta["scalar"] == 2.5 and type(meta["scalar"]) is float


def test_file_is_a_plain_npz_with_a_versioned_json_header(tmp_path):
    path = tmp_path / "model.npz"
    lstm_ag.save(path, _params(), step=3)
    with np.load(path, allow_pickle=False) as npz:
        assert set(npz.files) == {HEADER, "params/Wx", "params/Wh", "params/b", "params/Wy",
                                  "params/by"}
        header = json.loads(str(npz[HEADER][()]))
    assert header["format"] == "lstm_ag.checkpoint" and header["version"] == 1
    assert header["meta"] == {"step": 3}


def test_params_without_readout_round_trip(tmp_path):
    params = lstm_ag.init_params(1, 2)
    lstm_ag.save(tmp_path / "m.npz", params)
    loaded, meta = lstm_ag.load(tmp_path / "m.npz")
    _assert_same(params, loaded)
    assert meta == {}


class _Bomb:
    """Unpickling this object writes a file: proof that something was unpickled."""

    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (open, (self.target, "w"))


def test_object_array_in_the_file_is_refused_never_unpickled(tmp_path):
    path = tmp_path / "evil.npz"
    lstm_ag.save(path, _params(), step=1)
    sentinel = tmp_path / "unpickled"
    with np.load(path, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    arrays["params/by"] = np.array([_Bomb(str(sentinel))], dtype=object)
    np.savez(path, **arrays)                      # np.savez pickles the object array
    with pytest.raises(CheckpointError, match="pickled") as err:
        lstm_ag.load(path)
    assert str(path) in str(err.value)
    assert not sentinel.exists()


def test_a_pickle_posing_as_a_checkpoint_is_refused(tmp_path):
    path = tmp_path / "model.npz"
    sentinel = tmp_path / "unpickled"
    path.write_bytes(pickle.dumps({"params": _Bomb(str(sentinel))}))
    with pytest.raises(CheckpointError, match="pickled") as err:
        lstm_ag.load(path)
    assert str(path) in str(err.value)
    assert not sentinel.exists()


def test_extra_object_entry_is_refused(tmp_path):
    path = tmp_path / "model.npz"
    lstm_ag.save(path, _params())
    with np.load(path, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    arrays["payload"] = np.array([_Bomb(str(tmp_path / "unpickled"))], dtype=object)
    np.savez(path, **arrays)
    with pytest.raises(CheckpointError, match="pickled"):
        lstm_ag.load(path)
    assert not (tmp_path / "unpickled").exists()


@pytest.mark.parametrize("keep", [0.0, 0.1, 0.5, 0.9, 0.99])
def test_truncated_file_raises_an_error_naming_it(tmp_path, keep):
    path = tmp_path / "model.npz"
    lstm_ag.save(path, _params(), step=1)
    data = path.read_bytes()
    path.write_bytes(data[:int(len(data) * keep)])
    with pytest.raises(CheckpointError) as err:
        lstm_ag.load(path)
    assert str(path) in str(err.value)


def test_foreign_files_are_refused_naming_the_file(tmp_path):
    npz = tmp_path / "other.npz"
    np.savez(npz, weights=np.zeros(3))
    with pytest.raises(CheckpointError, match="not an lstm_ag checkpoint") as err:
        lstm_ag.load(npz)
    assert str(npz) in str(err.value) and "weights" in str(err.value)
    npy = tmp_path / "array.npy"
    np.save(npy, np.zeros(3))
    with pytest.raises(CheckpointError, match="not an lstm_ag checkpoint"):
        lstm_ag.load(npy)
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(CheckpointError, match="notes.txt"):
        lstm_ag.load(text)


def test_missing_file_names_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing.npz"):
        lstm_ag.load(tmp_path / "nothing.npz")


def _rewrite(path, edit):
    with np.load(path, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    header = json.loads(str(arrays[HEADER][()]))
    edit(arrays, header)
    arrays[HEADER] = np.array(json.dumps(header))
    np.savez(path, **arrays)


def test_shapes_keys_and_version_are_validated_on_load(tmp_path):
    path = tmp_path / "model.npz"
    lstm_ag.save(path, _params())

    def wrong_shape(arrays, header):
        arrays["params/Wh"] = np.zeros((3, 5))
    _rewrite(path, wrong_shape)
    with pytest.raises(CheckpointError, match=r"Wh.*\(3, 12\).*\(3, 5\)") as err:
        lstm_ag.load(path)
    assert str(path) in str(err.value)

    lstm_ag.save(path, _params())

    def missing_key(arrays, header):
        del arrays["params/b"]
    _rewrite(path, missing_key)
    with pytest.raises(CheckpointError, match="missing.*params/b"):
        lstm_ag.load(path)

    lstm_ag.save(path, _params())

    def newer(arrays, header):
        header["version"] = 99
    _rewrite(path, newer)
    with pytest.raises(CheckpointError, match="version 99"):
        lstm_ag.load(path)

    lstm_ag.save(path, _params())

    def integer_weights(arrays, header):
        arrays["params/b"] = np.zeros(12, dtype=np.int64)
    _rewrite(path, integer_weights)
    with pytest.raises(CheckpointError, match="float32 or float64"):
        lstm_ag.load(path)


def test_atomic_write_leaves_no_temporary_file(tmp_path):
    path = tmp_path / "model.npz"
    for step in range(3):
        lstm_ag.save(path, _params(), step=step)
    assert os.listdir(tmp_path) == ["model.npz"]
    assert lstm_ag.load(path)[1]["step"] == 2


def test_a_crash_while_writing_keeps_the_old_checkpoint_and_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / "model.npz"
    old = _params()
    lstm_ag.save(path, old, step=1)

    def crash(file, **arrays):
        file.write(b"PK\x03\x04 half a zip")
        raise KeyboardInterrupt                     # Ctrl-C in the middle of the write
    monkeypatch.setattr(np, "savez", crash)
    with pytest.raises(KeyboardInterrupt):
        lstm_ag.save(path, lstm_ag.init_params(2, 3, 1, seed=9), step=2)
    monkeypatch.undo()
    assert os.listdir(tmp_path) == ["model.npz"]
    loaded, meta = lstm_ag.load(path)
    _assert_same(old, loaded)
    assert meta["step"] == 1


def test_bad_arguments_to_save_name_them(tmp_path):
    path = tmp_path / "model.npz"
    with pytest.raises(ValueError, match="Wh"):
        lstm_ag.save(path, {**_params(), "Wh": np.zeros((3, 3))})
    with pytest.raises(TypeError, match=r"meta\['when'\].*set"):
        lstm_ag.save(path, _params(), when={1, 2})
    with pytest.raises(TypeError, match="object array"):
        lstm_ag.save(path, _params(), blob=np.array([object()], dtype=object))
    assert not os.listdir(tmp_path)                 # nothing written, nothing left behind
