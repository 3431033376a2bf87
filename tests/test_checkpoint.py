"""lstm_ag.save / lstm_ag.load: round trip, no pickle ever, atomic writes, errors name the file."""
import io
import json
import os
import pickle
import threading
import time
import tracemalloc
import warnings
import zipfile

import numpy as np
import pytest

import lstm_ag
from lstm_ag import CheckpointError
from lstm_ag.checkpoint import HEADER
from lstm_ag.params import flatten, structure, tree_map


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
    assert header["format"] == "lstm_ag.checkpoint" and header["version"] == 2
    assert header["meta"] == {"step": 3}
    assert header["arrays"]["params/Wh"] == {"dtype": "<f8", "shape": [3, 12]}


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
    with pytest.raises(CheckpointError, match="unexpected entries 'payload'"):
        lstm_ag.load(path)                      # refused by name, before it is read
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
    with pytest.raises(CheckpointError, match=r"notes\.txt"):
        lstm_ag.load(text)


def test_missing_file_names_it(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"no checkpoint.*nothing\.npz"):
        lstm_ag.load(tmp_path / "nothing.npz")


def _rewrite(path, edit):
    with np.load(path, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    header = json.loads(str(arrays[HEADER][()]))
    edit(arrays, header)
    header["arrays"] = {k: {"dtype": v.dtype.str, "shape": list(v.shape)}
                        for k, v in arrays.items() if k != HEADER}
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
    with pytest.raises(CheckpointError, match=r"missing.*params/b"):
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


# ---------------------------------------------------------------- issue 10: hostile files

def _members(path):
    """(name, raw bytes) of every entry of a zip, in order."""
    with zipfile.ZipFile(path) as zf:
        return [(info.filename, zf.read(info)) for info in zf.infolist()]


def _write_zip(path, members, *, compression=zipfile.ZIP_STORED, edit=None):
    """A zip of ``members`` (duplicates allowed); ``edit(zf)`` runs before the directory is
    written, so it can change what the central directory declares."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")              # zipfile warns about duplicate names
        with zipfile.ZipFile(path, "w", compression) as zf:
            for name, data in members:
                zf.writestr(name, data)
            if edit is not None:
                edit(zf)


def _npy(array):
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, np.asarray(array), allow_pickle=False)
    return buffer.getvalue()


def _with_header(path, header):
    """Rewrite the checkpoint at ``path`` with another header (a JSON text or a value)."""
    text = header if isinstance(header, str) else json.dumps(header)
    members = [(n, _npy(np.array(text)) if n == f"{HEADER}.npy" else d)
               for n, d in _members(path)]
    _write_zip(path, members)


def _header(path):
    with np.load(path, allow_pickle=False) as npz:
        return json.loads(str(npz[HEADER][()]))


def _refused(path, match=None, **kwargs):
    with pytest.raises(CheckpointError, match=match) as err:
        lstm_ag.load(path, **kwargs)
    assert str(path) in str(err.value)
    return str(err.value)


def test_version_1_files_written_by_lstm_ag_0_1_still_load(tmp_path):
    path = tmp_path / "old.npz"
    params = _params()
    header = {"format": "lstm_ag.checkpoint", "version": 1, "params": list(params),
              "meta": {"step": 7, "v": {"__array__": "meta/0"}}}
    np.savez(path, **{f"params/{k}": v for k, v in params.items()},
             **{"meta/0": np.arange(3.0), HEADER: np.array(json.dumps(header))})
    loaded, meta = lstm_ag.load(path)
    _assert_same(params, loaded)
    assert meta["step"] == 7 and np.array_equal(meta["v"], np.arange(3.0))
    # the same checks apply to them: a header without meta is refused
    del header["meta"]
    _with_header(path, header)
    _refused(path, r"lacks \['meta'\]")


@pytest.mark.parametrize("edit, match", [
    (lambda h: h.pop("meta"), r"lacks \['meta'\]"),
    (lambda h: h.pop("arrays"), r"lacks \['arrays'\]"),
    (lambda h: h.update(extra=1), r"unexpected 'extra' fields"),
    (lambda h: h.update(version=[[["x" * 1000]]]), r"version \[\[\['x{50,}\.\.\. is not"),
    (lambda h: h.update(meta=[]), "'meta' is not a dict"),
    (lambda h: h.update(meta={"x": {"__array__": []}}), "malformed array reference"),
    (lambda h: h.update(meta={"x": {"__array__": "meta/0", "y": 1}}), "malformed array"),
    (lambda h: h.update(meta={"x": {"__array__": "params/Wx"}}), "malformed array"),
    (lambda h: h.update(params="Wx"), "'params' is not a list"),
    (lambda h: h.update(params=["Wx", "Wx"]), "'params' is not a list"),
    (lambda h: h.update(params=["../x"]), "'params' is not a list"),
    (lambda h: h.update(version=True), "version True"),
    (lambda h: h.update(version=2.0), "version 2.0"),
    (lambda h: h.update(version=3), "version 3"),
    (lambda h: h.update(format="other"), "not an lstm_ag checkpoint"),
    (lambda h: h["arrays"].update({"params/Wx": {"dtype": "<f8"}}), "layout of 'params/Wx'"),
    (lambda h: h["arrays"]["params/Wx"].update(dtype="O"), "dtype of 'params/Wx'"),
    (lambda h: h["arrays"]["params/Wx"].update(dtype="<f7"), "dtype numpy knows"),
    (lambda h: h["arrays"]["params/Wx"].update(shape=[2, -12]), "layout of 'params/Wx'"),
    (lambda h: h["arrays"]["params/Wx"].update(shape=[12, 2]), "holds dtype float64, shape"),
    (lambda h: h["arrays"]["params/Wx"].update(shape=[2, 1000]), "declares .* bytes, but"),
    (lambda h: h["arrays"]["params/Wx"].update(shape=[2, 13]), "the header says float64, "),
    (lambda h: h["arrays"]["params/Wx"].update(dtype="<f4"), "the header says float32, "),
    (lambda h: h["arrays"].update({"meta/0": {"dtype": "<f8", "shape": []}}),
     "'arrays' lists"),
])
def test_every_malformed_header_is_a_checkpoint_error_naming_the_file(tmp_path, edit, match):
    path = tmp_path / "model.npz"
    lstm_ag.save(path, _params(), step=1)
    header = _header(path)
    edit(header)
    _with_header(path, header)
    _refused(path, match)


@pytest.mark.parametrize("text", ["[" * 100_000, "[" * 70 + "]" * 70, "{" * 5000,
                                  '{"a":' * 200 + "1" + "}" * 200, "1" * 5000, "nan", "",
                                  "\ud800", '"lstm_ag.checkpoint"'],
                         ids=["deep-100000", "deep-70", "deep-dict-5000", "deep-200",
                              "long-int", "nan", "empty", "surrogate", "string"])
def test_deep_or_odd_json_headers_are_refused_without_recursion_error(tmp_path, text):
    path = tmp_path / "model.npz"
    lstm_ag.save(path, _params())
    _with_header(path, text)
    _refused(path)


def test_a_header_entry_without_npy_magic_is_refused_naming_the_file(tmp_path):
    path = tmp_path / "model.npz"
    lstm_ag.save(path, _params())
    members = [(n, b'{"format": "lstm_ag.checkpoint"}' if n == f"{HEADER}.npy" else d)
               for n, d in _members(path)]
    _write_zip(path, members)
    _refused(path, "npy header of '__lstm_ag__'")
    members = [(n, _npy(np.zeros(3)) if n == f"{HEADER}.npy" else d) for n, d in members]
    _write_zip(path, members)
    _refused(path, "not a JSON string")


def test_duplicate_entries_are_refused_whichever_comes_last(tmp_path):
    path = tmp_path / "model.npz"
    lstm_ag.save(path, _params(), step=1)
    members = _members(path)
    for name in (f"{HEADER}.npy", "params/Wx.npy"):
        original = dict(members)[name]
        _write_zip(path, [*members, (name, original)])
        _refused(path, "more than once")


@pytest.mark.parametrize("name", ["notes.txt", "params/Wx", "../meta/0.npy", "/params/b.npy",
                                  "meta/00.npy", "meta/-1.npy", "params/", "params/W x.npy"])
def test_unknown_entries_are_refused_before_reading_them(tmp_path, name):
    path = tmp_path / "model.npz"
    lstm_ag.save(path, _params())
    _write_zip(path, [*_members(path), (name, b"\x00" * 10)])
    _refused(path, "unexpected entries")


def test_entries_the_header_does_not_list_are_refused(tmp_path):
    path = tmp_path / "model.npz"
    lstm_ag.save(path, _params())
    _write_zip(path, [*_members(path), ("meta/0.npy", _npy(np.zeros(3)))])
    _refused(path, r"unexpected \['meta/0'\]")


def test_encrypted_entries_are_refused(tmp_path):
    path = tmp_path / "model.npz"
    lstm_ag.save(path, _params())

    def encrypt(zf):
        zf.filelist[1].flag_bits |= 0x1
    _write_zip(path, _members(path), edit=encrypt)
    _refused(path, "encrypted")


def _bomb(path, *, zeros=64 << 20, npy_rows=None, shape=None, declared=None):
    """A checkpoint whose meta/0 entry is a .npy header saying ``npy_rows`` float64 rows
    followed by ``zeros`` bytes of zeros, deflated, whose central directory declares
    ``declared`` bytes (None: the truth), and whose JSON header says its shape is ``shape``
    (None: the truth). Returns (rows the zeros hold, the .npy header's length)."""
    lstm_ag.save(path, _params(), big=np.zeros(1))
    header = _header(path)
    rows = zeros // 8
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {
        "descr": "<f8", "fortran_order": False, "shape": (rows if npy_rows is None else npy_rows,)})
    npy_head = buffer.getvalue()
    header["arrays"]["meta/0"]["shape"] = [rows] if shape is None else list(shape)
    members = [(n, _npy(np.array(json.dumps(header))) if n == f"{HEADER}.npy" else d)
               for n, d in _members(path) if n != "meta/0.npy"]

    def edit(zf):
        with zf.open("meta/0.npy", "w", force_zip64=True) as member:
            member.write(npy_head)
            chunk = bytes(1 << 20)
            left = zeros
            while left:
                member.write(chunk[:min(left, len(chunk))])
                left -= min(left, len(chunk))
        if declared is not None:
            zf.filelist[-1].file_size = declared
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        for name, data in members:
            zf.writestr(name, data)
        edit(zf)
    return rows, len(npy_head)


def _timed_refusal(path, match, **kwargs):
    tracemalloc.start()
    start = time.perf_counter()
    try:
        message = _refused(path, match, **kwargs)
    finally:
        seconds = time.perf_counter() - start
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert seconds < 1.0, seconds
    assert peak < 8 << 20, peak                     # nothing of the 64 MiB was inflated
    return message


def test_a_6_gib_declared_entry_is_refused_in_well_under_a_second(tmp_path):
    path = tmp_path / "bomb.npz"
    _bomb(path, zeros=1 << 20, declared=6 << 30)
    assert path.stat().st_size < 100_000
    assert "refused before inflating anything" in _timed_refusal(path, "6442")
    # with the cap raised, the declared size still disagrees with the header's shape
    _timed_refusal(path, "declares 6442450944 bytes, but", max_bytes=8 << 30)


def test_a_deflate_bomb_is_refused_by_the_cap_without_inflating_it(tmp_path):
    path = tmp_path / "bomb.npz"
    rows, _ = _bomb(path)
    assert path.stat().st_size < 1 << 20              # 64 MiB of zeros in a small file
    _timed_refusal(path, "more than the limit of 16777216", max_bytes=16 << 20)
    # its size is honest, so within the (default) cap it is an ordinary checkpoint
    assert lstm_ag.load(path)[1]["big"].shape == (rows,)


def test_an_entry_that_inflates_beyond_its_declared_size_is_read_no_further(tmp_path):
    path = tmp_path / "bomb.npz"
    _, head = _bomb(path, zeros=1 << 20, npy_rows=1, shape=[1], declared=1)
    _bomb(path, npy_rows=1, shape=[1], declared=head + 8)   # 1 row declared, 64 MiB inflate
    _timed_refusal(path, "Bad CRC")


def test_an_entry_larger_than_the_header_says_is_refused_before_inflating(tmp_path):
    path = tmp_path / "bomb.npz"
    _bomb(path, shape=[1])                         # honest 64 MiB entry, header says 1 row
    _timed_refusal(path, r"declares \d+ bytes, but its dtype float64 and shape \(1,\)")


def test_load_arguments_are_checked(tmp_path):
    path = tmp_path / "model.npz"
    lstm_ag.save(path, _params())
    with pytest.raises(TypeError, match="max_bytes"):
        lstm_ag.load(path, max_bytes=1.5)
    with pytest.raises(ValueError, match="max_bytes"):
        lstm_ag.load(path, max_bytes=0)
    with pytest.raises(ValueError, match="path"):
        lstm_ag.load("")
    _refused(path, "more than the limit", max_bytes=1000)
    assert lstm_ag.load(os.fsencode(path))[1] == {}


def _load_in_thread(path):
    """load(path) in a daemon thread: (finished within 5 s, exception or None)."""
    outcome = []

    def run():
        try:
            lstm_ag.load(path)
            outcome.append(None)
        except Exception as err:
            outcome.append(err)
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(5)
    return bool(outcome), (outcome or [None])[0]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")
def test_a_fifo_is_refused_without_blocking(tmp_path):
    path = tmp_path / "model.npz"
    os.mkfifo(path)
    finished, err = _load_in_thread(path)
    assert finished, "load blocked on a FIFO"
    assert isinstance(err, CheckpointError) and "FIFO" in str(err) and str(path) in str(err)


def test_a_directory_is_refused_as_not_a_regular_file(tmp_path):
    _refused(tmp_path, "a directory")


@pytest.mark.skipif(not hasattr(os, "symlink"), reason="no symbolic links")
def test_save_refuses_a_directory_or_a_link_to_one_and_replaces_nothing(tmp_path):
    target = tmp_path / "runs"
    target.mkdir()
    (target / "keep.txt").write_text("x")
    link = tmp_path / "model.npz"
    link.symlink_to(target, target_is_directory=True)
    for path in (target, link):
        with pytest.raises(IsADirectoryError, match="directory") as err:
            lstm_ag.save(path, _params())
        assert err.value.filename == str(path)
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert os.listdir(target) == ["keep.txt"]
    assert sorted(os.listdir(tmp_path)) == ["model.npz", "runs"]


def test_save_refuses_paths_that_name_no_file(tmp_path):
    for path in ("", str(tmp_path) + os.sep, os.path.join(str(tmp_path), ".."), "a\0b"):
        with pytest.raises(ValueError, match="path"):
            lstm_ag.save(path, _params())
    with pytest.raises(TypeError, match="path"):
        lstm_ag.save(3, _params())
    assert not os.listdir(tmp_path)


@pytest.mark.parametrize("length", [244, 255])
def test_the_longest_legal_names_save_and_load(tmp_path, length):
    path = tmp_path / ("m" * (length - 4) + ".npz")
    try:
        path.write_bytes(b"")
    except OSError:
        pytest.skip(f"this file system refuses {length}-byte names")
    path.unlink()
    lstm_ag.save(path, _params(), step=1)
    assert lstm_ag.load(path)[1] == {"step": 1}
    assert os.listdir(tmp_path) == [path.name]


def _temp_names(base):
    """Names that look like temporaries of saves to ``base`` (the 0.1 form, then the new)."""
    from lstm_ag.atomic import _temp_patterns
    prefix, _ = _temp_patterns(base)
    return f".{base}.0123456789ab.tmp", f"{prefix}ba9876543210.tmp"


def test_stale_temporary_files_of_the_same_target_are_removed_and_nothing_else(tmp_path):
    old = time.time() - lstm_ag.checkpoint.STALE_SECONDS - 60
    stale = _temp_names("model.npz")
    fresh = f"{_temp_names('model.npz')[1][:-16]}00000000aaaa.tmp"
    others = [*_temp_names("other.npz"), ".model.npz.0123456789AB.tmp", "model.npz.tmp",
              f"{stale[1]}.bak", f"x{stale[1]}"]
    for name in [*stale, fresh, *others]:
        (tmp_path / name).write_bytes(b"half a checkpoint")
        if name != fresh:
            os.utime(tmp_path / name, (old, old))
    kept = [fresh, *others]
    if hasattr(os, "symlink"):                  # a link with a temp's name is not removed
        link = f"{_temp_names('model.npz')[1][:-16]}11111111bbbb.tmp"
        os.symlink(tmp_path / "other.npz.missing", tmp_path / link)
        os.utime(tmp_path / link, (old, old), follow_symlinks=False)
        kept.append(link)
    lstm_ag.save(tmp_path / "model.npz", _params())
    assert sorted(os.listdir(tmp_path)) == sorted(["model.npz", *kept])


def test_temporary_names_are_short_and_beside_the_target(tmp_path, monkeypatch):
    seen = []
    real_open = os.open

    def spy(path, *args, **kwargs):
        seen.append(os.fspath(path))
        return real_open(path, *args, **kwargs)
    monkeypatch.setattr(os, "open", spy)
    lstm_ag.save(tmp_path / ("é" * 100 + ".npz"), _params())
    monkeypatch.undo()
    temps = [p for p in seen if p.endswith(".tmp")]
    assert len(temps) == 1 and os.path.dirname(temps[0]) == str(tmp_path)
    assert len(os.fsencode(os.path.basename(temps[0]))) <= 91


@pytest.mark.parametrize("value, kind", [
    (np.complex128(1 + 2j), "complex128"), (np.datetime64("2026-01-01"), "datetime64"),
    (np.timedelta64(3, "s"), "timedelta64"), (np.bytes_(b"ab"), "S2"),
    (np.longdouble(1) if np.dtype(np.longdouble).itemsize > 8 else np.void(b"x"), ""),
    (1 + 2j, "complex"), (b"ab", "bytes"), ({1, 2}, "set"),
])
def test_metadata_scalars_json_cannot_hold_are_refused_naming_the_key(tmp_path, value, kind):
    with pytest.raises(TypeError, match=rf"meta\['cfg'\]\['x'\].*{kind}"):
        lstm_ag.save(tmp_path / "m.npz", _params(), cfg={"x": value})
    assert not os.listdir(tmp_path)


def test_metadata_arrays_of_every_kind_round_trip_and_odd_ones_are_refused(tmp_path):
    path = tmp_path / "m.npz"
    arrays = {"c": np.array([1 + 2j]), "t": np.array(["2026-01-01"], dtype="M8[D]"),
              "s": np.array([b"ab"]), "u": np.array(["é"]), "b": np.array([True]),
              "f": np.asfortranarray(np.arange(6.0).reshape(2, 3)), "e": np.zeros((0, 3)),
              "z": np.array(5, dtype=np.int8), "big": np.arange(3, dtype=">i4")}
    lstm_ag.save(path, _params(), **arrays, scalars=[np.float32(0.5), np.int16(3),
                                                     np.bool_(True), np.str_("s")])
    meta = lstm_ag.load(path)[1]
    for key, array in arrays.items():
        assert meta[key].dtype == array.dtype and np.array_equal(meta[key], array), key
    assert meta["scalars"] == [0.5, 3, True, "s"]
    assert [type(v) for v in meta["scalars"]] == [float, int, bool, str]
    for bad, match in [(np.zeros(2, dtype="f8,i4"), "dtype"), (np.ma.array([1.0]), "subclass"),
                       (np.zeros(2, dtype="V3"), "dtype")]:
        with pytest.raises(TypeError, match=match):
            lstm_ag.save(path, _params(), bad=bad)


def test_metadata_nesting_is_limited_and_cycles_are_refused(tmp_path):
    from lstm_ag.checkpoint import MAX_DEPTH
    path = tmp_path / "m.npz"
    deep = np.ones(2)
    for _ in range(MAX_DEPTH - 1):
        deep = [deep]
    lstm_ag.save(path, _params(), deep=deep)           # an array at the deepest level
    value = lstm_ag.load(path)[1]["deep"]
    for _ in range(MAX_DEPTH - 1):
        value = value[0]
    assert np.array_equal(value, np.ones(2))
    with pytest.raises(ValueError, match=r"meta\['deep'\](\[0\])+ is nested deeper"):
        lstm_ag.save(path, _params(), deep=[deep])
    loop = []
    loop.append(loop)
    with pytest.raises(ValueError, match="nested deeper"):
        lstm_ag.save(path, _params(), loop=loop)
    with pytest.raises(ValueError, match="4096 bits"):
        lstm_ag.save(path, _params(), big=10 ** 2000)
    assert lstm_ag.load(path)[1]["deep"] is not None  # the file written first is intact


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_parameters_are_never_written(tmp_path, bad):
    params = _params()
    params["Wh"][1, 2] = bad
    with pytest.raises(ValueError, match=r"params\['Wh'\].*NaN or inf"):
        lstm_ag.save(tmp_path / "m.npz", params)
    assert not os.listdir(tmp_path)


def test_non_finite_parameters_in_a_file_are_refused(tmp_path):
    path = tmp_path / "m.npz"
    lstm_ag.save(path, _params())
    members = [(n, _npy(np.full(12, np.nan)) if n == "params/b.npy" else d)
               for n, d in _members(path)]
    _write_zip(path, members)
    _refused(path, r"params\['b'\].*NaN or inf")


def test_compressed_npz_files_are_read(tmp_path):
    path = tmp_path / "m.npz"
    params = _params()
    lstm_ag.save(path, params, v=np.arange(4.0))
    _write_zip(path, _members(path), compression=zipfile.ZIP_DEFLATED)
    loaded, meta = lstm_ag.load(path)
    _assert_same(params, loaded)
    assert np.array_equal(meta["v"], np.arange(4.0))


# -- stacked and bidirectional models ----------------------------------------------------------

def _nested(num_layers, bidirectional, dtype=np.float64):
    return lstm_ag.init_params(2, 3, 1, seed=5, dtype=dtype, num_layers=num_layers,
                               bidirectional=bidirectional)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("num_layers, bidirectional", [(2, False), (1, True), (3, True)])
def test_stacked_and_bidirectional_params_round_trip_bit_exact(tmp_path, num_layers,
                                                               bidirectional, dtype):
    params = _nested(num_layers, bidirectional, dtype)
    rng = np.random.default_rng(2)
    velocity = tree_map(lambda a: rng.standard_normal(a.shape).astype(dtype), params)
    path = tmp_path / "model.npz"
    lstm_ag.save(path, params, step=4, velocity=velocity)
    loaded, meta = lstm_ag.load(path)
    assert structure(loaded) == (num_layers, 2 if bidirectional else 1)
    assert list(loaded) == list(params)                      # the nesting as saved
    if num_layers > 1:
        assert type(loaded["layers"]) is list and len(loaded["layers"]) == num_layers - 1
    _assert_same(flatten(params), flatten(loaded))
    _assert_same(flatten(velocity), flatten(meta["velocity"]))  # nested metadata too
    with np.load(path, allow_pickle=False) as npz:
        assert set(npz.files) == {HEADER} | {f"params/{k}" for k in flatten(params)} | \
            {f"meta/{n}" for n in range(len(flatten(params)))}
    header = _header(path)
    assert header["params"] == list(flatten(params))
    assert header["arrays"][f"params/layers.{num_layers - 2}.Wx" if num_layers > 1
                            else "params/reverse.Wx"]["shape"] == \
        ([3 * (2 if bidirectional else 1), 12] if num_layers > 1 else [2, 12])


def test_a_one_layer_file_is_laid_out_as_before_stacked_models(tmp_path):
    path = tmp_path / "model.npz"
    lstm_ag.save(path, _params(), step=1)
    assert [name for name, _ in _members(path)] == [
        "params/Wx.npy", "params/Wh.npy", "params/b.npy", "params/Wy.npy", "params/by.npy",
        f"{HEADER}.npy"]
    assert _header(path)["params"] == ["Wx", "Wh", "b", "Wy", "by"]


def _renamed(old, new):
    """An edit for :func:`_rewrite`: the parameter ``old`` renamed ``new``, header and entry."""
    def edit(arrays, header):
        arrays[f"params/{new}"] = arrays.pop(f"params/{old}")
        header["params"] = [new if k == old else k for k in header["params"]]
    return edit


def _dropped(*names):
    def edit(arrays, header):
        for name in names:
            del arrays[f"params/{name}"]
        header["params"] = [k for k in header["params"] if k not in names]
    return edit


def _added(**extra):
    def edit(arrays, header):
        for name, value in extra.items():
            arrays[f"params/{name.replace('__', '.')}"] = value
            header["params"].append(name.replace("__", "."))
    return edit


@pytest.mark.parametrize("name", ["params/layers.0.Wz.npy", "params/layers.00.Wx.npy",
                                  "params/layers.-1.Wx.npy", "params/layers.Wx.npy",
                                  "params/layers.0.npy", "params/layers.0.Wy.npy",
                                  "params/reverse.layers.0.Wx.npy",
                                  "params/layers.0.reverse.reverse.b.npy",
                                  "params/reverse.by.npy", "params/layers..Wx.npy"])
def test_tampered_nested_entry_names_are_refused_before_reading_them(tmp_path, name):
    path = tmp_path / "model.npz"
    lstm_ag.save(path, _nested(2, True))
    _write_zip(path, [*_members(path), (name, _npy(np.zeros(3)))])
    assert "unexpected entries" in _refused(path)


@pytest.mark.parametrize("edit, match", [
    (_renamed("layers.0.Wx", "layers.0.Wz"), r"unexpected entries 'params/layers.0.Wz'"),
    (_renamed("layers.1.Wh", "layers.01.Wh"), r"unexpected entries 'params/layers.01.Wh'"),
    (lambda arrays, header: header.update(params=[k.replace("layers.1.", "layers.x.")
                                                  for k in header["params"]]),
     r"'params' is not a list of distinct parameter names"),
    (lambda arrays, header: [_renamed(f"layers.0.{k}", f"layers.2.{k}")(arrays, header)
                             for k in ("Wx", "Wh", "b", "reverse.Wx", "reverse.Wh",
                                       "reverse.b")],
     r"invalid parameters: parameter names number the layers \['1', '2'\], not 0, 1"),
    (_dropped("layers.1.reverse.Wh"),
     r"invalid parameters: params\['layers'\]\[1\]\['reverse'\] is missing 'Wh'"),
    (_dropped("reverse.Wx", "reverse.Wh", "reverse.b"),
     (r"invalid parameters: params\['layers'\]\[0\]\['reverse'\] is given but "
      r"params\['reverse'\] is not")),
    (lambda arrays, header: arrays.update({"params/layers.0.Wx": np.zeros((3, 12))}),
     r"invalid parameters: params\['layers'\]\[0\]\['Wx'\] must have shape \(6, 12\)"),
    (lambda arrays, header: arrays.update({"params/layers.1.reverse.b": np.full(12, np.nan)}),
     r"params\['layers'\]\[1\]\['reverse'\]\['b'\] contains NaN"),
])
def test_tampered_nested_params_are_refused_naming_the_file(tmp_path, edit, match):
    path = tmp_path / "model.npz"
    lstm_ag.save(path, _nested(3, True), step=2)
    _rewrite(path, edit)
    _refused(path, match)


def test_a_reverse_direction_added_to_a_unidirectional_layer_is_refused(tmp_path):
    path = tmp_path / "model.npz"
    lstm_ag.save(path, _nested(2, False))
    _rewrite(path, _added(layers__0__reverse__Wx=np.zeros((3, 12)),
                          layers__0__reverse__Wh=np.zeros((3, 12)),
                          layers__0__reverse__b=np.zeros(12)))
    _refused(path, r"params\['layers'\]\[0\]\['reverse'\] is given but params\['reverse'\] "
                   "is not")
