"""Checkpoints: parameters and metadata in one ``.npz``, never pickled, written atomically.

A checkpoint is a plain numpy ``.npz`` (a zip of ``.npy`` arrays) that
``np.load(path, allow_pickle=False)`` reads::

    __lstm_ag__     0-d unicode array, a JSON header:
                    {"format": "lstm_ag.checkpoint", "version": 1,
                     "params": ["Wx", "Wh", ...], "meta": {...}}
    params/Wx ...   the parameter arrays, dtype kept (float32 stays float32)
    meta/0 ...      arrays found inside the metadata (optimizer buffers, say); the JSON
                    holds ``{"__array__": "meta/0"}`` in their place

Guarantees:

* nothing is unpickled: the file is opened with ``allow_pickle=False``, so an object array
  (or a pickle pretending to be a checkpoint) is refused with :class:`CheckpointError`;
* the write is atomic: the data goes to a temporary file in the same directory, is flushed
  to disk, and is moved into place with :func:`os.replace`; a crash leaves either the old
  checkpoint or the new one, never half a file, and the temporary file is removed on error;
* on load the header, the format version, the set of entries and every parameter shape are
  validated; a truncated, foreign or inconsistent file raises :class:`CheckpointError`
  naming the file.
"""
import contextlib
import json
import os
import secrets

import numpy as onp

from .params import check_params

__all__ = ["save", "load", "atomic_write", "CheckpointError", "FORMAT", "VERSION"]

#: The ``format`` field of the header, and the name of the entry that holds it.
FORMAT = "lstm_ag.checkpoint"
HEADER = "__lstm_ag__"
#: The newest format version this module writes and reads.
VERSION = 1
_ARRAY = "__array__"
_JSON_SCALARS = (str, int, float, bool, type(None))


class CheckpointError(ValueError):
    """A file is not a readable lstm_ag checkpoint (the message names the file)."""


def _encode(value, arrays, where):
    """JSON-ready copy of ``value``; numpy arrays move to ``arrays`` under ``meta/<n>``."""
    if isinstance(value, onp.ndarray):
        if value.dtype.hasobject:
            raise TypeError(f"{where} is an object array; checkpoints hold numeric arrays only")
        key = f"meta/{len([k for k in arrays if k.startswith('meta/')])}"
        arrays[key] = value
        return {_ARRAY: key}
    if isinstance(value, onp.generic):
        return value.item()
    if isinstance(value, _JSON_SCALARS):
        return value
    if isinstance(value, dict):
        if _ARRAY in value:
            raise ValueError(f"{where} uses the reserved key {_ARRAY!r}")
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"{where} has a key {key!r} of type {type(key).__name__}; "
                                "metadata keys must be strings")
            out[key] = _encode(item, arrays, f"{where}[{key!r}]")
        return out
    if isinstance(value, (list, tuple)):
        return [_encode(item, arrays, f"{where}[{i}]") for i, item in enumerate(value)]
    raise TypeError(f"{where} has type {type(value).__name__}; metadata must be JSON values "
                    "(str, int, float, bool, None, lists, dicts) or numpy arrays")


def _decode(value, arrays, path):
    if isinstance(value, dict):
        if set(value) == {_ARRAY}:
            key = value[_ARRAY]
            if key not in arrays:
                raise CheckpointError(f"{path}: the header refers to array {key!r}, "
                                      "which the file does not hold")
            return arrays[key]
        return {k: _decode(v, arrays, path) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode(v, arrays, path) for v in value]
    return value


def _fsync_directory(directory):
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:                      # not possible on every platform (Windows)
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path, write, *, mode="wb"):
    """Write a file atomically: all of it or, after a crash, none of it.

    - path: the file to (re)write (str or path-like); its directory must exist.
    - write: ``write(file)`` writes the content into an open file object.
    - mode: ``"wb"`` (bytes) or ``"w"`` (text, UTF-8).

    The content goes to a new temporary file beside ``path`` (``O_EXCL``), is flushed and
    fsynced, then moved over ``path`` with :func:`os.replace`, and the directory is fsynced.
    On any exception (KeyboardInterrupt included) the temporary file is removed and the old
    file, if any, is left as it was. Returns ``path``.
    """
    if mode not in ("wb", "w"):
        raise ValueError(f"mode must be 'wb' or 'w', got {mode!r}")
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(directory, f".{os.path.basename(path)}.{secrets.token_hex(6)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        kwargs = {"encoding": "utf-8"} if mode == "w" else {}
        with os.fdopen(fd, mode, **kwargs) as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
    except BaseException:                # KeyboardInterrupt included: never leave the temp
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_directory(directory)
    return path


def save(path, params, **meta):
    """Write ``params`` and JSON metadata to ``path`` as an ``.npz``, atomically.

    - path: file name (str or path-like), used exactly as given (no ``.npz`` is appended);
      its directory must exist.
    - params: dict ``Wx (D, 4H)``, ``Wh (H, 4H)``, ``b (4H,)`` and optionally ``Wy (H, O)``,
      ``by (O,)`` of float arrays; validated with the library's shape checks.
    - meta: keyword arguments of JSON values (str, int, float, bool, None, lists, dicts with
      string keys) or numpy arrays anywhere inside them (stored as arrays, bit for bit).
      Tuples come back as lists.
    Returns ``path``. Raises ``TypeError``/``ValueError`` naming the offending argument.

    >>> import os, tempfile, lstm_ag
    >>> path = os.path.join(tempfile.mkdtemp(), "model.npz")
    >>> _ = save(path, lstm_ag.init_params(1, 2), step=20, config={"hidden": 2})
    >>> params, meta = load(path)
    >>> sorted(params), meta
    (['Wh', 'Wx', 'b'], {'step': 20, 'config': {'hidden': 2}})
    """
    path = os.fspath(path)
    check_params(params)
    arrays = {f"params/{key}": onp.asarray(value) for key, value in params.items()}
    encoded = _encode(meta, arrays, "meta")
    header = {"format": FORMAT, "version": VERSION, "params": list(params), "meta": encoded}
    arrays[HEADER] = onp.array(json.dumps(header))

    def write(file):
        onp.savez(file, **arrays)

    atomic_write(path, write)
    return path


def _entries(npz, path):
    """Every array of an open NpzFile (closed afterwards); object arrays are refused."""
    with npz:
        names = list(npz.files)
        if HEADER not in names:
            shown = ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")
            raise CheckpointError(f"{path}: not an lstm_ag checkpoint (no {HEADER!r} "
                                  f"entry; it holds: {shown or 'nothing'})")
        arrays = {}
        for name in names:
            try:
                arrays[name] = npz[name]
            except ValueError as err:
                if "allow_pickle" in str(err) or "Object arrays" in str(err):
                    raise CheckpointError(f"{path}: entry {name!r} is a pickled object "
                                          "array; refused (checkpoints are never "
                                          "unpickled)") from None
                raise
    return arrays


def _read(path):
    """The header and every array of the file, or CheckpointError naming ``path``."""
    try:
        # Our own file handle: np.load leaks its handle when a truncated zip fails to open.
        with open(path, "rb") as handle:
            npz = onp.load(handle, allow_pickle=False)
            if not isinstance(npz, onp.lib.npyio.NpzFile):
                raise CheckpointError(f"{path}: not an lstm_ag checkpoint (a single .npy "
                                      "array, not an .npz archive)")
            arrays = _entries(npz, path)
    except CheckpointError:
        raise
    except FileNotFoundError:
        raise FileNotFoundError(f"no checkpoint at {path}") from None
    except ValueError as err:
        if "pickle" in str(err):
            raise CheckpointError(f"{path}: holds pickled data; refused (checkpoints are "
                                  "never unpickled)") from None
        raise CheckpointError(f"{path}: not a readable checkpoint ({err})") from err
    except Exception as err:            # whatever a corrupt zip raises (OSError,
        # EOFError, BadZipFile, zlib.error, struct.error, NotImplementedError, ...): only
        # np.load and the reading of entries run in this try
        raise CheckpointError(f"{path}: not a readable checkpoint, truncated or corrupt "
                              f"({type(err).__name__}: {err})") from err
    raw = arrays.pop(HEADER)
    if raw.dtype.kind != "U" or raw.shape != ():
        raise CheckpointError(f"{path}: the {HEADER!r} entry is not a JSON string "
                              f"(dtype {raw.dtype}, shape {raw.shape})")
    try:
        header = json.loads(str(raw[()]))
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{path}: the header is not valid JSON ({err})") from None
    return header, arrays


def load(path):
    """Read a checkpoint written by :func:`save`.

    - path: file name (str or path-like).
    Returns ``(params, meta)``: the parameter dict (shapes as saved, dtype kept) and the
    metadata dict, arrays restored bit for bit, tuples as lists.
    Raises ``FileNotFoundError`` when there is no file, and :class:`CheckpointError` (a
    ``ValueError``) naming the file when it is truncated, foreign, pickled, of a newer format
    version, or holds parameters of inconsistent shapes.
    """
    path = os.fspath(path)
    header, arrays = _read(path)
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        found = header.get("format") if isinstance(header, dict) else type(header).__name__
        raise CheckpointError(f"{path}: not an lstm_ag checkpoint (format {found!r}, "
                              f"expected {FORMAT!r})")
    version = header.get("version")
    if not isinstance(version, int) or not 1 <= version <= VERSION:
        raise CheckpointError(f"{path}: format version {version!r} is not supported "
                              f"(this lstm_ag reads versions 1 to {VERSION})")
    keys = header.get("params")
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        raise CheckpointError(f"{path}: the header's 'params' is not a list of names")
    expected = {f"params/{k}" for k in keys}
    params_found = {name for name in arrays if name.startswith("params/")}
    if params_found != expected:
        missing = sorted(expected - params_found)
        extra = sorted(params_found - expected)
        raise CheckpointError(f"{path}: parameter entries do not match the header "
                              f"(missing {missing}, unexpected {extra})")
    params = {k: arrays[f"params/{k}"] for k in keys}
    try:
        check_params(params)
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"{path}: invalid parameters: {err}") from None
    meta_arrays = {name: a for name, a in arrays.items() if name.startswith("meta/")}
    unknown = sorted(set(arrays) - params_found - set(meta_arrays))
    if unknown:
        raise CheckpointError(f"{path}: unexpected entries {unknown}")
    meta = _decode(header.get("meta", {}), meta_arrays, path)
    if not isinstance(meta, dict):
        raise CheckpointError(f"{path}: the header's 'meta' is not a dict")
    return params, meta
