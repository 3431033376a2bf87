"""Property-based fuzzing of lstm_ag.load: whatever the file holds, load returns exactly what a
well-formed file means or raises a CheckpointError naming the file; never another exception,
never a warning.

Each property runs a few dozen examples by default (a few seconds in all); the ``slow``
variants run thousands: ``python -m pytest -m slow tests/test_fuzz_checkpoint.py``.
``--hypothesis-show-statistics`` lists the outcomes (``loaded``/``refused: <reason>``).
"""
import functools
import io
import json
import re
import struct
import warnings
import zipfile

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import lstm_ag
from lstm_ag import CheckpointError
from lstm_ag.checkpoint import HEADER

FAST = settings(max_examples=40, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
SLOW = settings(max_examples=2500, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@pytest.fixture(scope="module")
def fuzz_path(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz") / "model.npz"


def _zip(members, compression=zipfile.ZIP_STORED):
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")                  # duplicate names are the point
        with zipfile.ZipFile(buffer, "w", compression) as zf:
            for name, data in members:
                info = zipfile.ZipInfo(name, date_time=(2026, 1, 1, 0, 0, 0))
                info.compress_type = compression
                zf.writestr(info, data)
    return buffer.getvalue()


def _npy(array):
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, np.asarray(array), allow_pickle=False)
    return buffer.getvalue()


@functools.cache
def _bases():
    """Well-formed files (v2 stored, v2 deflated, v1) and the members of the v2 one."""
    import tempfile
    params = lstm_ag.init_params(2, 3, 1, seed=5)
    meta = {"step": 3, "cfg": {"lr": 0.1, "tags": ["a", None]},
            "v": {"Wx": np.arange(6.0).reshape(2, 3)}, "s": np.array(["ab"])}
    with tempfile.TemporaryDirectory() as directory:
        path = f"{directory}/m.npz"
        lstm_ag.save(path, params, **meta)
        with open(path, "rb") as file:
            stored = file.read()
    with zipfile.ZipFile(io.BytesIO(stored)) as zf:
        members = tuple((i.filename, zf.read(i)) for i in zf.infolist())
    header = {"format": "lstm_ag.checkpoint", "version": 1, "params": list(params),
              "meta": {"step": 3, "w": {"__array__": "meta/0"}}}
    v1 = _zip([*((f"params/{k}.npy", _npy(v)) for k, v in params.items()),
               ("meta/0.npy", _npy(np.ones(4, np.float32))),
               (f"{HEADER}.npy", _npy(np.array(json.dumps(header))))])
    return {"stored": stored, "deflated": _zip(members, zipfile.ZIP_DEFLATED), "v1": v1}, members


def _meaning(members):
    """(params, meta) a file of these members means if it is well formed."""
    arrays = {n[:-4]: np.lib.format.read_array(io.BytesIO(d), allow_pickle=False)
              for n, d in members}
    header = json.loads(str(arrays.pop(HEADER)[()]))

    def decode(value):
        if isinstance(value, dict):
            if "__array__" in value:
                return arrays[value["__array__"]]
            return {k: decode(v) for k, v in value.items()}
        if isinstance(value, list):
            return [decode(v) for v in value]
        return value
    return {k: arrays[f"params/{k}"] for k in header["params"]}, decode(header["meta"])


def _same(a, b):
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return (isinstance(a, np.ndarray) and isinstance(b, np.ndarray) and a.dtype == b.dtype
                and a.shape == b.shape and a.tobytes() == b.tobytes())
    if isinstance(a, dict):
        return (isinstance(b, dict) and list(a) == list(b)
                and all(_same(a[k], b[k]) for k in a))
    if isinstance(a, (list, tuple)):
        return type(b) is type(a) and len(a) == len(b) and all(map(_same, a, b))
    if isinstance(a, float) and isinstance(b, float) and np.isnan(a) and np.isnan(b):
        return True
    return type(a) is type(b) and a == b


def _check(path, data, expected=None):
    """Load ``data`` from ``path``: a CheckpointError naming it, or (params, meta) that are
    finite, valid and, when ``expected`` is given (or callable), the same as it."""
    path.write_bytes(data)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            params, meta = lstm_ag.load(path)
        except CheckpointError as err:
            message = str(err)
            assert message.startswith(f"{path}: "), message
            assert len(message) < len(str(path)) + 400, message    # short and readable
            reason = re.sub(r"\([^()]*\)|'[^']*'|\[[^]]*\]|\d+", "_", message[len(str(path)) + 2:])
            event("refused: " + " ".join(reason.split()[:6]))
        else:
            event("loaded")
            lstm_ag.check_params(params)                  # float arrays, finite, consistent
            assert isinstance(meta, dict)
            if expected is not None:
                want = expected() if callable(expected) else expected
                assert _same(params, want[0]) and _same(meta, want[1])
    assert not caught, [f"{w.category.__name__}: {w.message}" for w in caught]


def _base_result(kind):
    data = _bases()[0][kind]
    buffer = io.BytesIO(data)
    with zipfile.ZipFile(buffer) as zf:
        return _meaning([(i.filename, zf.read(i)) for i in zf.infolist()])


kinds = st.sampled_from(["stored", "deflated", "v1"])


@st.composite
def truncations(draw):
    kind = draw(kinds)
    size = len(_bases()[0][kind])
    keep = draw(st.integers(0, size) | st.integers(max(0, size - 64), size)
                | st.integers(0, 64))
    return kind, keep


def check_truncation(path, case):
    kind, keep = case
    data = _bases()[0][kind]
    _check(path, data[:keep], _base_result(kind))


@st.composite
def flips(draw):
    kind = draw(kinds)
    size = len(_bases()[0][kind])
    positions = st.integers(0, size - 1) | st.integers(max(0, size - 200), size - 1)
    return kind, draw(st.lists(st.tuples(positions, st.integers(1, 255)), min_size=1,
                                max_size=8))


def check_flips(path, case):
    kind, changes = case
    data = bytearray(_bases()[0][kind])
    for position, mask in changes:
        data[position] ^= mask
    _check(path, bytes(data), _base_result(kind))


_VALID_NAMES = [f"{HEADER}.npy", "params/Wx.npy", "params/Wh.npy", "params/b.npy",
                "params/Wy.npy", "params/by.npy", "meta/0.npy", "meta/1.npy", "meta/2.npy"]
names = (st.sampled_from(_VALID_NAMES)
         | st.sampled_from(["params/Wz.npy", "meta/00.npy", "../x.npy", "params/Wx",
                            "__lstm_ag__", "PARAMS/WX.NPY", "params/Wx.npy/", "meta/-1.npy",
                            "params/b.npy\0", ""])
         | st.text(max_size=20))


@st.composite
def member_lists(draw):
    original = dict(_bases()[1])
    payloads = list(original.values())
    chosen = draw(st.lists(names, max_size=12))
    if draw(st.booleans()):                      # mostly the real file, changed a little
        chosen = [*original, *chosen[:2]]
        drop = draw(st.integers(0, len(chosen)))
        chosen = chosen[:drop] + chosen[drop + 1:] if draw(st.booleans()) else chosen
    members = []
    for name in chosen:
        payload = draw(st.sampled_from(["own", "other", "bytes"]))
        if payload == "own" and name in original:
            data = original[name]
        elif payload == "bytes":
            data = draw(st.binary(max_size=200))
        else:
            data = draw(st.sampled_from(payloads))
        members.append((name, data))
    compression = draw(st.sampled_from([zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED]))
    return members, compression


def check_members(path, case):
    members, compression = case
    try:
        data = _zip(members, compression)
    except (ValueError, UnicodeEncodeError):           # a name zipfile cannot write
        return
    _check(path, data, lambda: _meaning(members))


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                 max_size=4),
    max_leaves=20)


@st.composite
def headers(draw):
    members = dict(_bases()[1])
    header = json.loads(str(np.lib.format.read_array(io.BytesIO(members[f"{HEADER}.npy"]))[()]))
    how = draw(st.sampled_from(["set", "delete", "deep", "text", "arrays", "reference"]))
    if how == "text":
        return draw(st.text(max_size=200) | st.sampled_from(["[" * 3000, "{" * 100, "1" * 5000]))
    if how == "deep":                # as text: nested objects would strain json.dumps
        depth = draw(st.integers(0, 60) | st.integers(60, 70) | st.integers(0, 3000))
        value = "[" * depth + json.dumps(draw(json_values)) + "]" * depth
        where = header["meta"] if draw(st.booleans()) else header
        where[draw(st.sampled_from([*where, "x"]))] = "@deep@"
        return json.dumps(header).replace('"@deep@"', value)
    if how == "arrays":
        entry = header["arrays"][draw(st.sampled_from(sorted(header["arrays"])))]
        entry[draw(st.sampled_from(["dtype", "shape", "x"]))] = draw(
            json_values | st.sampled_from(["<f4", ">f8", "|O", "<U2", "<f7", "<M8[s]", "|V8"])
            | st.lists(st.integers(-2, 2 ** 63), max_size=5))
        return header
    if how == "reference":
        header["meta"][draw(st.text(max_size=5))] = {"__array__": draw(
            json_values | st.sampled_from(["meta/0", "meta/1", "meta/9", "params/Wx"]))}
        return header
    target = header
    for key in draw(st.lists(st.sampled_from(["meta", "cfg", "arrays", "v", "params"]),
                             max_size=3)):
        if isinstance(target, dict) and isinstance(target.get(key), dict):
            target = target[key]
    key = draw(st.sampled_from([*target, "x"]))
    if how == "delete":
        target.pop(key, None)
    else:
        target[key] = draw(json_values)
    return header


def check_header(path, header):
    text = header if isinstance(header, str) else json.dumps(header)
    members = [(n, _npy(np.array(text)) if n == f"{HEADER}.npy" else d)
               for n, d in _bases()[1]]
    _check(path, _zip(members), lambda: _meaning(members))


@st.composite
def npy_payloads(draw):
    """An entry replaced by a .npy of a random header: dtype, shape, order, data length."""
    name = draw(st.sampled_from([n for n, _ in _bases()[1]]))
    descr = draw(st.sampled_from(["'<f8'", "'<f4'", "'|O'", "'<U0'", "'<U3'", "'>f8'",
                                  "'<M8[s]'", "'|V8'", "[('a', '<f8')]", "'<f7'", "'<c16'",
                                  "'(2,)<f8'", "1", "'|b1'"]) | st.text(max_size=8).map(repr))
    shape = draw(st.lists(st.integers(-2, 2 ** 62) | st.integers(0, 12), max_size=4)
                 .map(lambda s: repr(tuple(s))) | st.sampled_from(["(2, 12)", "(3, 12)",
                                                                   "(12,)", "[3]", "()"]))
    fortran = draw(st.sampled_from(["False", "True", "0", "None"]))
    text = f"{{'descr': {descr}, 'fortran_order': {fortran}, 'shape': {shape}, }}"
    version = draw(st.sampled_from([b"\x01\x00", b"\x02\x00", b"\x03\x00", b"\x09\x00"]))
    encoded = text.encode("latin1", "replace")
    size = struct.pack("<H" if version == b"\x01\x00" else "<I", len(encoded) + 1)
    head = b"\x93NUMPY" + version + size + encoded + b"\n"
    data = draw(st.binary(max_size=400) | st.just(np.arange(36.0).tobytes())
                | st.just(np.ones(12).tobytes()))
    return name, head + data


def check_npy(path, case):
    name, payload = case
    members = [(n, payload if n == name else d) for n, d in _bases()[1]]
    _check(path, _zip(members), lambda: _meaning(members))


def _tests(strategy, check):
    """The property as a quick test and a ``slow``-marked long run."""
    def make(speed):
        @given(case=strategy)
        def test(fuzz_path, case):
            check(fuzz_path, case)
        return speed(test)
    return make(FAST), pytest.mark.slow(make(SLOW))


def test_the_base_files_load_as_saved(fuzz_path):
    files, _ = _bases()
    for kind, data in files.items():
        fuzz_path.write_bytes(data)
        params, meta = lstm_ag.load(fuzz_path)
        assert _same((params, meta), _base_result(kind)), kind
    assert meta["w"].dtype == np.float32


test_truncations, test_truncations_slow = _tests(truncations(), check_truncation)
test_byte_flips, test_byte_flips_slow = _tests(flips(), check_flips)
test_member_names, test_member_names_slow = _tests(member_lists(), check_members)
test_json_headers, test_json_headers_slow = _tests(headers(), check_header)
test_npy_headers, test_npy_headers_slow = _tests(npy_payloads(), check_npy)
