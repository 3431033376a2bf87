"""Checkpoints: parameters and metadata in one ``.npz``, never pickled, written atomically.

A checkpoint is a plain numpy ``.npz`` (a zip of ``.npy`` arrays) that
``np.load(path, allow_pickle=False)`` reads::

    __lstm_ag__     0-d unicode array, a JSON header:
                    {"format": "lstm_ag.checkpoint", "version": 2,
                     "params": ["Wx", "Wh", ...],
                     "arrays": {"params/Wx": {"dtype": "<f8", "shape": [2, 12]}, ...},
                     "meta": {...}}
    params/Wx ...   the parameter arrays, dtype kept (float32 stays float32), named as
                    :func:`lstm_ag.params.flatten` names them: ``params/Wx`` ... ``params/by``
                    for a one-layer model (the same file as before stacked models existed),
                    and for more layers or directions also ``params/reverse.Wx``,
                    ``params/layers.0.Wx``, ``params/layers.0.reverse.b``, ...
    meta/0 ...      arrays found inside the metadata (optimizer buffers, say); the JSON
                    holds ``{"__array__": "meta/0"}`` in their place

The header's ``arrays`` table (new in version 2) gives the dtype and shape of every array,
so the loader knows every entry's size before it inflates anything. Version-1 files (written
by lstm_ag 0.1) are still read, with the same checks: their sizes come from each entry's own
``.npy`` header, read (a few hundred bytes) before any data.

Guarantees of :func:`load`:

* nothing is unpickled: object arrays (and pickles posing as checkpoints) are refused;
* only a regular file is opened (a FIFO, a directory, a device is refused without blocking);
* the zip directory is read first, and, before anything is inflated, the loader refuses
  duplicate, unknown, encrypted or oddly compressed entries (a parameter entry must bear one of
  the names an LSTM's parameters have: ``Wx``, ``Wh``, ``b``, optionally after ``reverse.``
  and ``layers.<n>.``, or ``Wy``, ``by``), a header entry over 64 MiB, and
  entries that declare more than ``max_bytes`` (4 GiB by default) in all; after the header,
  entries that the header does not list (or that it lists and the file lacks), and entries
  whose declared size, ``.npy`` dtype or shape disagrees with the header; each entry is then
  read no further than its declared size, with its CRC checked;
* a caller's own check of the metadata (``load(path, check=...)``: the trainer's fields and
  config) runs once the header is read and before any array is inflated, each array there
  as a :class:`Layout` (shape, dtype): a legal file of 1 MB declaring a 1 GiB array behind
  metadata its caller does not know costs nothing to refuse;
* the header is checked field by field (format, version, params, arrays, meta: a missing or
  unknown field is an error), JSON nested deeper than ``MAX_DEPTH + 2`` levels is refused,
  parameters are put back into their nested dicts and lists (:func:`lstm_ag.params.unflatten`;
  layers numbered other than 0, 1, ... are refused) and validated with the library's checks
  (structure, shapes, dtype, finite values);
* every malformed file raises :class:`CheckpointError` (a ``ValueError``) naming the file;
  only a missing file raises ``FileNotFoundError``, and an unreadable one its ``OSError``.

Guarantees of :func:`save`:

* the write is atomic (:func:`lstm_ag.atomic.atomic_write`: a temporary file beside the
  target, fsynced, moved into place; a crash leaves the old file or the new one);
* parameters must be finite and metadata plain JSON values or numpy arrays: NaN/inf
  parameters, numpy complex, datetime or bytes scalars, non-string keys and nesting deeper
  than ``MAX_DEPTH`` are refused with ``ValueError``/``TypeError`` naming the entry.

The modules: this one holds the format (the header, the entry names, the metadata's
encoding) and :func:`save`/:func:`load`; :mod:`lstm_ag.npz_reader` reads the zip and its
``.npy`` entries defensively; :mod:`lstm_ag.atomic` writes files. ``atomic_write``,
``STALE_SECONDS`` and ``LOCKED_GRACE_SECONDS`` are named here too, as before the split.
"""
import json
import re
from collections.abc import Callable
from typing import NamedTuple

import numpy as onp

from .atomic import LOCKED_GRACE_SECONDS, STALE_SECONDS, atomic_write, path_text
from .npz_reader import (
    ARRAY_KINDS,
    MAX_ENTRIES,
    MAX_NDIM,
    CheckpointError,
    check_layout,
    entries,
    npy_layout,
    open_archive,
    open_regular,
    read_entry,
    reading,
    shorten,
    shown,
)
from .params import (
    CORE_KEYS,
    LAYERS_KEY,
    READOUT_KEYS,
    REVERSE_KEY,
    check_params,
    flatten,
    unflatten,
)

__all__ = ["save", "load", "atomic_write", "CheckpointError", "Layout", "FORMAT", "VERSION",
           "MAX_BYTES", "MAX_DEPTH", "STALE_SECONDS", "LOCKED_GRACE_SECONDS"]

#: The ``format`` field of the header, and the name of the entry that holds it.
FORMAT = "lstm_ag.checkpoint"
HEADER = "__lstm_ag__"
#: The newest format version this module writes and reads (it reads 1 and 2).
VERSION = 2
#: Default cap on the bytes all entries of a checkpoint declare (``load(max_bytes=...)``).
MAX_BYTES = 4 << 30
#: Deepest nesting of lists, dicts and arrays in the metadata (the ``meta`` dict is level 0).
MAX_DEPTH = 64

_ARRAY = "__array__"
_HEADER_MAX_BYTES = 64 << 20          # the JSON header entry (UTF-32 text)
# The names flatten() gives an LSTM's arrays: "Wx", "reverse.Wx", "layers.0.reverse.b", "Wy".
_PARAM_TEXT = (rf"(?:{LAYERS_KEY}\.(?:0|[1-9][0-9]{{0,5}})\.)?(?:{REVERSE_KEY}\.)?"
               rf"(?:{'|'.join(CORE_KEYS)})|{'|'.join(READOUT_KEYS)}")
_PARAM_NAME = re.compile(_PARAM_TEXT)
_META_NAME = re.compile(r"meta/(?:0|[1-9][0-9]{0,8})")
_ENTRY_NAME = re.compile(rf"(__lstm_ag__|params/(?:{_PARAM_TEXT})|"
                         r"meta/(?:0|[1-9][0-9]{0,8}))\.npy")
_ENTRY_TEXT = (f"an lstm_ag checkpoint holds only {HEADER!r}, 'params/<name>' and 'meta/<n>' "
               "arrays, <name> one of Wx, Wh, b, Wy, by, reverse.Wx, layers.0.Wx, "
               "layers.0.reverse.Wx, ...")
_DTYPE_TEXT = re.compile(r"[<>|=][biufcSUmM][0-9]{1,9}(?:\[[0-9]{0,9}[A-Za-z]{1,2}\])?")


# ----------------------------------------------------------------------------- writing

def _layout(array):
    return {"dtype": array.dtype.str, "shape": [int(n) for n in array.shape]}


def _encode(value, arrays, table, where, depth):
    """JSON-ready copy of ``value``; numpy arrays move to ``arrays`` under ``meta/<n>``."""
    if isinstance(value, (onp.ndarray, dict, list, tuple)) and depth > MAX_DEPTH:
        raise ValueError(f"{where} is nested deeper than {MAX_DEPTH} levels (or contains "
                         "itself); metadata must be a finite tree of JSON values")
    if isinstance(value, onp.ndarray):
        if type(value) is not onp.ndarray:
            raise TypeError(f"{where} is a {type(value).__name__}, a subclass of numpy's "
                            "ndarray; pass np.asarray of it")
        if value.dtype.hasobject:
            raise TypeError(f"{where} is an object array; checkpoints hold numeric arrays only")
        if (value.dtype.kind not in ARRAY_KINDS or value.dtype.fields is not None
                or value.dtype.subdtype is not None):
            raise TypeError(f"{where} has dtype {value.dtype}; checkpoint arrays hold "
                            "booleans, numbers, strings, bytes or datetimes")
        key = f"meta/{sum(k.startswith('meta/') for k in arrays)}"
        arrays[key] = value
        table[key] = _layout(value)
        return {_ARRAY: key}
    if isinstance(value, onp.generic):
        if isinstance(value, onp.bool_):
            return bool(value)
        if isinstance(value, onp.integer) and not isinstance(value, onp.timedelta64):
            return int(value)
        if isinstance(value, onp.floating) and value.dtype.itemsize <= 8:
            return float(value)
        if isinstance(value, onp.str_):
            return str(value)
        raise TypeError(f"{where} is a numpy {value.dtype} scalar; metadata scalars must be "
                        "str, int, float, bool or None (store it as an array: np.asarray(x))")
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        if value.bit_length() > 4096:
            raise ValueError(f"{where} is an integer of {value.bit_length()} bits; metadata "
                             "integers are limited to 4096 bits")
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, str):
        return str(value)
    if isinstance(value, dict):
        if _ARRAY in value:
            raise ValueError(f"{where} uses the reserved key {_ARRAY!r}")
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"{where} has a key {key!r} of type {type(key).__name__}; "
                                "metadata keys must be strings")
            out[str(key)] = _encode(item, arrays, table, f"{where}[{key!r}]", depth + 1)
        return out
    if isinstance(value, (list, tuple)):
        return [_encode(item, arrays, table, f"{where}[{i}]", depth + 1)
                for i, item in enumerate(value)]
    raise TypeError(f"{where} has type {type(value).__name__}; metadata must be JSON values "
                    "(str, int, float, bool, None, lists, dicts) or numpy arrays")


def save(path, params: dict, **meta):
    """Write ``params`` and JSON metadata to ``path`` as an ``.npz``, atomically.

    - path: file name (str or path-like), used exactly as given (no ``.npz`` is appended);
      its directory must exist; a directory there raises ``IsADirectoryError``.
    - params: dict ``Wx (D, 4H)``, ``Wh (H, 4H)``, ``b (4H,)`` and optionally ``Wy (H, O)``,
      ``by (O,)`` of finite float arrays, and for a stacked or bidirectional model its
      ``"reverse"`` and ``"layers"`` (:mod:`lstm_ag.params`); validated with the library's
      checks. Each array is stored under its :func:`lstm_ag.params.flatten` name.
    - meta: keyword arguments of JSON values (str, int, float, bool, None, lists, dicts with
      string keys; numpy bool, integer, float and str scalars become these) or numpy arrays
      of booleans, numbers, strings, bytes or datetimes anywhere inside them (stored as
      arrays, bit for bit), nested at most ``MAX_DEPTH`` levels. Tuples come back as lists.
    Returns ``path``. Raises ``TypeError``/``ValueError`` naming the offending argument.

    >>> import os, tempfile, lstm_ag
    >>> path = os.path.join(tempfile.mkdtemp(), "model.npz")
    >>> _ = save(path, lstm_ag.init_params(1, 2), step=20, config={"hidden": 2})
    >>> params, meta = load(path)
    >>> sorted(params), meta
    (['Wh', 'Wx', 'b'], {'step': 20, 'config': {'hidden': 2}})
    """
    path_text(path)
    check_params(params)
    flat = flatten(params)
    arrays, table = {}, {}
    for key, value in flat.items():
        arrays[f"params/{key}"] = array = onp.asarray(value)
        table[f"params/{key}"] = _layout(array)
    encoded = _encode(meta, arrays, table, "meta", 0)
    header = {"format": FORMAT, "version": VERSION, "params": list(flat), "arrays": table,
              "meta": encoded}
    arrays[HEADER] = onp.array(json.dumps(header))

    def write(file):
        onp.savez(file, allow_pickle=False, **arrays)

    return atomic_write(path, write)


# ----------------------------------------------------------------------------- reading

def _depth(value):
    """How deeply lists and dicts nest in a parsed JSON value (iteratively)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, (list, dict)):
            deepest = max(deepest, level)
            stack.extend((v, level + 1) for v in (item.values() if isinstance(item, dict)
                                                  else item))
    return deepest


def _parse_header(text, name):
    limit = MAX_DEPTH + 2
    try:
        header = json.loads(text)
    except RecursionError:              # json's C scanner counts its nesting: refused
        raise CheckpointError(f"{name}: the header nests deeper than {limit} levels") from None
    except ValueError as err:           # JSONDecodeError, an integer of too many digits
        raise CheckpointError(f"{name}: the header is not valid JSON ({err})") from None
    if _depth(header) > limit:
        raise CheckpointError(f"{name}: the header nests deeper than {limit} levels")
    return header


def _dtype(text, name, entry):
    if not isinstance(text, str) or not _DTYPE_TEXT.fullmatch(text):
        raise CheckpointError(f"{name}: the header's dtype of {shorten(entry)} is "
                              f"{shorten(text)}, not a dtype a checkpoint holds")
    try:
        return onp.dtype(text)
    except (TypeError, ValueError):
        raise CheckpointError(f"{name}: the header's dtype of {shorten(entry)} is "
                              f"{shorten(text)}, not a dtype numpy knows") from None


def _check_header(header, name):
    """(version, parameter names, arrays table or None, meta) of a well-formed header."""
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        found = header.get("format") if isinstance(header, dict) else type(header).__name__
        raise CheckpointError(f"{name}: not an lstm_ag checkpoint (format {shorten(found)}, "
                              f"expected {FORMAT!r})")
    version = header.get("version")
    if type(version) is not int or not 1 <= version <= VERSION:
        raise CheckpointError(f"{name}: format version {shorten(version)} is not supported "
                              f"(this lstm_ag reads versions 1 to {VERSION})")
    fields = {"format", "version", "params", "meta"} | ({"arrays"} if version >= 2 else set())
    if set(header) != fields:
        raise CheckpointError(f"{name}: the header lacks {sorted(fields - set(header))} and "
                              f"has unexpected {shown(set(header) - fields)} fields")
    keys = header["params"]
    if (not isinstance(keys, list) or not keys or len(keys) > MAX_ENTRIES
            or not all(isinstance(k, str) and _PARAM_NAME.fullmatch(k) for k in keys)
            or len(set(keys)) != len(keys)):
        raise CheckpointError(f"{name}: the header's 'params' is not a list of distinct "
                              "parameter names")
    if not isinstance(header["meta"], dict):
        raise CheckpointError(f"{name}: the header's 'meta' is not a dict")
    table = None
    if version >= 2:
        raw = header["arrays"]
        if not isinstance(raw, dict):
            raise CheckpointError(f"{name}: the header's 'arrays' is not a dict")
        table = {}
        for entry, layout in raw.items():
            if (not isinstance(layout, dict) or set(layout) != {"dtype", "shape"}
                    or not isinstance(layout["shape"], list)
                    or len(layout["shape"]) > MAX_NDIM
                    or not all(type(n) is int and n >= 0 for n in layout["shape"])):
                raise CheckpointError(f"{name}: the header's layout of {shorten(entry)} is not "
                                      "{'dtype': ..., 'shape': [...]}")
            table[entry] = (tuple(layout["shape"]), _dtype(layout["dtype"], name, entry))
    return version, keys, table, header["meta"]


def _references(meta, name):
    """The ``meta/<n>`` entries the metadata refers to (each once)."""
    found, stack = [], [meta]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if _ARRAY in item:
                key = item[_ARRAY]
                if len(item) != 1 or not isinstance(key, str) or not _META_NAME.fullmatch(key):
                    raise CheckpointError(f"{name}: the header holds a malformed array "
                                          f"reference {shorten(item)}")
                found.append(key)
            else:
                stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    if len(set(found)) != len(found):
        raise CheckpointError(f"{name}: the header refers to one array twice")
    return set(found)


def _decode(value, arrays):
    if isinstance(value, dict):
        if _ARRAY in value:
            return arrays[value[_ARRAY]]
        return {k: _decode(v, arrays) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode(v, arrays) for v in value]
    return value


def _read_header(zf, info, name):
    shape, dtype = npy_layout(zf, info, name, HEADER)
    if dtype.kind != "U" or shape != ():
        raise CheckpointError(f"{name}: the {HEADER!r} entry is not a JSON string "
                              f"(dtype {dtype}, shape {shape})")
    raw = read_entry(zf, info, name, HEADER, shape, dtype)
    with reading(name, "the header text"):
        return str(raw[()])


def _load(file, name, max_bytes, check=None):
    with open_archive(file, name) as zf:
        infos = entries(zf.infolist(), name, max_bytes, required=f"{HEADER}.npy",
                        known=_ENTRY_NAME, known_text=_ENTRY_TEXT)
        if infos[HEADER].file_size > _HEADER_MAX_BYTES:
            raise CheckpointError(f"{name}: its header entry declares "
                                  f"{infos[HEADER].file_size} bytes, more than any header "
                                  f"({_HEADER_MAX_BYTES}); refused")
        header = _parse_header(_read_header(zf, infos[HEADER], name), name)
        version, keys, table, meta = _check_header(header, name)
        expected = {f"params/{k}" for k in keys} | _references(meta, name)
        held = set(infos) - {HEADER}
        if held != expected:
            raise CheckpointError(f"{name}: entries do not match the header (missing "
                                  f"[{shown(expected - held)}], unexpected "
                                  f"[{shown(held - expected)}])")
        if table is not None and set(table) != expected:
            raise CheckpointError(f"{name}: the header's 'arrays' lists {shown(table)}, "
                                  f"its params and meta use {shown(expected)}")
        if table is not None:        # sizes against the header, before opening any entry
            for entry, (shape, dtype) in table.items():
                check_layout(name, entry, infos[entry], shape, dtype)
        layouts = {}
        for entry in sorted(expected, key=lambda e: (not e.startswith("params/"), e)):
            layouts[entry] = npy_layout(zf, infos[entry], name, entry)
            if table is not None and (layouts[entry][0] != table[entry][0]
                                      or layouts[entry][1] != table[entry][1]):
                raise CheckpointError(f"{name}: entry {entry!r} holds dtype "
                                      f"{layouts[entry][1]}, shape {layouts[entry][0]}; the "
                                      f"header says {table[entry][1]}, {table[entry][0]}")
        if check is not None:        # the caller's checks, before any array is inflated
            check(_decode(meta, {e: Layout(*layouts[e]) for e in layouts
                                 if e.startswith("meta/")}),
                  {k: Layout(*layouts[f"params/{k}"]) for k in keys})
        bad = [k for k in keys if layouts[f"params/{k}"][1] not in (onp.float32, onp.float64)]
        if bad:
            raise CheckpointError(f"{name}: invalid parameters: params[{bad[0]!r}] must be "
                                  f"float32 or float64, got {layouts[f'params/{bad[0]}'][1]}")
        flat = {k: read_entry(zf, infos[f"params/{k}"], name, f"params/{k}",
                              *layouts[f"params/{k}"]) for k in keys}
        try:
            params = unflatten(flat)
            check_params(params)
        except (TypeError, ValueError) as err:
            raise CheckpointError(f"{name}: invalid parameters: {err}") from None
        arrays = {entry: read_entry(zf, infos[entry], name, entry, *layouts[entry])
                  for entry in sorted(expected) if entry.startswith("meta/")}
    return params, _decode(meta, arrays)


class Layout(NamedTuple):
    """What :func:`load` passes to its ``check`` in place of an array not yet read: its
    ``shape`` (a tuple) and numpy ``dtype``."""
    shape: tuple
    dtype: onp.dtype


def load(path, *, max_bytes: int = MAX_BYTES,
         check: Callable[[dict, dict], None] | None = None) -> tuple[dict, dict]:
    """Read a checkpoint written by :func:`save` (format version 1 or 2).

    - path: file name (str, bytes or path-like).
    - max_bytes: the most bytes the file's entries may declare in all (4 GiB by default);
      a file declaring more is refused before anything is inflated.
    - check: optional ``check(meta, params)``, called once the header is validated and
      before any array is inflated, with the metadata (each array in it a :class:`Layout`)
      and ``{flatten name: Layout}`` of the parameters; it refuses the file by raising (a
      :class:`CheckpointError` naming the file, say). A caller that knows what its
      metadata must hold (the trainer) refuses a foreign file without reading its arrays.
    Returns ``(params, meta)``: the parameter dict (shapes as saved, dtype kept; a stacked or
    bidirectional model's ``"reverse"`` and ``"layers"`` nested as saved) and the metadata
    dict, arrays restored bit for bit, tuples as lists.
    Raises ``FileNotFoundError`` when there is no file, the ``OSError`` of a file that cannot
    be opened, and :class:`CheckpointError` (a ``ValueError``) naming the file when it is
    not a regular file, truncated, foreign, pickled, of a newer format version, too large,
    inconsistent with its header, or holds invalid parameters.
    """
    name = path_text(path)
    if type(max_bytes) is not int:
        raise TypeError(f"max_bytes must be an int, got {type(max_bytes).__name__}")
    if max_bytes < 1:
        raise ValueError(f"max_bytes must be at least 1, got {max_bytes}")
    if check is not None and not callable(check):
        raise TypeError(f"check must be callable or None, got {type(check).__name__}")
    with open_regular(name) as file:
        return _load(file, name, max_bytes, check)
