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

Guarantees of :func:`save` and :func:`atomic_write`:

* the write is atomic: the data goes to a temporary file ``.<first 16 characters of the
  name>.<8 hex digits of its hash>.<12 random hex digits>.tmp`` in the same directory (short
  enough beside any legal name), is fsynced, and moved into place with :func:`os.replace`;
  a crash leaves the old file or the new one, never half a file; on an exception the
  temporary file is removed;
* a writer holds an advisory lock (``flock``) on its temporary file until it is moved into
  place; temporary files that earlier saves of the same target left behind (a killed
  process: its lock went with it) are removed by the next save once they are older than
  ``LOCKED_GRACE_SECONDS`` (2 s) and their lock is free, and any older than
  ``STALE_SECONDS`` (30 minutes; the only rule where there is no flock): only regular files
  of this user whose names match that target's temporary-name pattern exactly, never one a
  live writer holds;
* a missing directory raises ``FileNotFoundError`` naming the target (not the temporary);
* a directory (or a symbolic link to one) at the target is refused with
  ``IsADirectoryError``, never replaced; a symbolic link to a file is replaced by the file;
* parameters must be finite and metadata plain JSON values or numpy arrays: NaN/inf
  parameters, numpy complex, datetime or bytes scalars, non-string keys and nesting deeper
  than ``MAX_DEPTH`` are refused with ``ValueError``/``TypeError`` naming the entry.
"""
import contextlib
import errno
import hashlib
import json
import math
import os
import re
import secrets
import stat
import time
import zipfile
from collections.abc import Callable
from typing import NamedTuple

import numpy as onp

try:
    import fcntl
except ImportError:                      # Windows: stale temporaries go by age alone
    fcntl = None

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
#: Age (seconds since the last write) after which a temporary file of a save is stale
#: whatever its lock says (where locks are not kept, it is the only rule).
STALE_SECONDS = 30 * 60
#: Age after which a temporary file whose writer's lock is free is stale (its writer ended:
#: a killed process); younger ones are spared, the instant between a writer's creating the
#: file and locking it included.
LOCKED_GRACE_SECONDS = 2

_ARRAY = "__array__"
_HEADER_MAX_BYTES = 64 << 20          # the JSON header entry (UTF-32 text)
_NPY_HEADER_MAX = 4096                # an entry's .npy header dictionary
_NPY_OVERHEAD = range(10, 12 + _NPY_HEADER_MAX + 1)   # magic, version, length, dictionary
_MAX_ENTRIES = 65536
_MAX_NDIM = 64
_MAX_COUNT = 1 << 40
# The names flatten() gives an LSTM's arrays: "Wx", "reverse.Wx", "layers.0.reverse.b", "Wy".
_PARAM_TEXT = (rf"(?:{LAYERS_KEY}\.(?:0|[1-9][0-9]{{0,5}})\.)?(?:{REVERSE_KEY}\.)?"
               rf"(?:{'|'.join(CORE_KEYS)})|{'|'.join(READOUT_KEYS)}")
_PARAM_NAME = re.compile(_PARAM_TEXT)
_META_NAME = re.compile(r"meta/(?:0|[1-9][0-9]{0,8})")
_ENTRY_NAME = re.compile(rf"(__lstm_ag__|params/(?:{_PARAM_TEXT})|"
                         r"meta/(?:0|[1-9][0-9]{0,8}))\.npy")
_DTYPE_TEXT = re.compile(r"[<>|=][biufcSUmM][0-9]{1,9}(?:\[[0-9]{0,9}[A-Za-z]{1,2}\])?")
_ARRAY_KINDS = "biufcSUmM"
_KINDS = {stat.S_IFDIR: "a directory", stat.S_IFIFO: "a FIFO", stat.S_IFSOCK: "a socket",
          stat.S_IFCHR: "a character device", stat.S_IFBLK: "a block device",
          stat.S_IFLNK: "a symbolic link"}


class CheckpointError(ValueError):
    """A file is not a readable lstm_ag checkpoint (the message names the file)."""


# ----------------------------------------------------------------------------- writing

def _path_text(path, what="path"):
    """``path`` as a str (bytes decoded as the OS does), refused when it names no file."""
    try:
        text = os.fspath(path)
    except TypeError:
        raise TypeError(f"{what} must be a str or path-like, got {type(path).__name__}") from None
    if isinstance(text, bytes):
        text = os.fsdecode(text)
    if not text:
        raise ValueError(f"{what} must name a file, got ''")
    if "\0" in text:
        raise ValueError(f"{what} must not contain a NUL character, got {text!r}")
    seps = (os.sep, os.altsep) if os.altsep else (os.sep,)
    if text.endswith(seps) or os.path.basename(text) in (".", ".."):
        raise ValueError(f"{what} must name a file, got {text!r} (a directory)")
    return text


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
        if (value.dtype.kind not in _ARRAY_KINDS or value.dtype.fields is not None
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


def _temp_patterns(base):
    """(prefix of this save's temporary names, patterns of any save's temporary names)."""
    digest = hashlib.sha256(os.fsencode(base)).hexdigest()[:8]
    prefix = f".{base[:16]}.{digest}."
    return prefix, (re.compile(re.escape(prefix) + r"[0-9a-f]{12}\.tmp", re.DOTALL),
                    # the names lstm_ag 0.1 used: .<whole name>.<12 hex>.tmp
                    re.compile(re.escape(f".{base}.") + r"[0-9a-f]{12}\.tmp", re.DOTALL))


def _hold(fd):
    """Take an advisory lock (``flock``) on a temporary file being written: the kernel drops
    it when its writer ends, however it ends. Where there is no flock, nothing."""
    if fcntl is not None:
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)


def _abandoned(path, info, now):
    """True when the temporary file ``path`` (stat ``info``) is no live writer's: with flock,
    one older than ``LOCKED_GRACE_SECONDS`` whose lock is free (its writer has ended: killed,
    crashed); without flock, or a lock that cannot be tried, one older than STALE_SECONDS."""
    age = now - info.st_mtime
    if age > STALE_SECONDS:
        return True
    if fcntl is None or age <= LOCKED_GRACE_SECONDS:
        return False
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0)
                     | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        return False
    try:
        if os.fstat(fd).st_ino != info.st_ino:
            return False                 # replaced since the scan
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:                      # held by its writer (BlockingIOError), or untried
        return False
    else:
        return True
    finally:
        os.close(fd)


def _remove_stale_temps(directory, patterns, now):
    """Remove this target's temporary files that no live writer holds (:func:`_abandoned`);
    never fail."""
    uid = os.geteuid() if hasattr(os, "geteuid") else None
    try:
        entries = os.scandir(directory)
    except OSError:
        return
    with entries:
        for entry in entries:
            if not any(p.fullmatch(entry.name) for p in patterns):
                continue
            with contextlib.suppress(OSError):
                info = entry.stat(follow_symlinks=False)
                if (stat.S_ISREG(info.st_mode) and (uid is None or info.st_uid == uid)
                        and _abandoned(entry.path, info, now)):
                    os.unlink(entry.path)


def atomic_write(path, write, *, mode: str = "wb"):
    """Write a file atomically: all of it or, after a crash, none of it.

    - path: the file to (re)write (str, bytes or path-like); its directory must exist.
    - write: ``write(file)`` writes the content into an open file object.
    - mode: ``"wb"`` (bytes) or ``"w"`` (text, UTF-8).

    The content goes to a new temporary file beside ``path`` (``O_EXCL``, a name of at most
    91 bytes), is flushed and fsynced, then moved over ``path`` with :func:`os.replace`, and
    the directory is fsynced; then temporary files of earlier writes to ``path`` older than
    ``STALE_SECONDS`` are removed. On any exception (KeyboardInterrupt included) the
    temporary file is removed and the old file, if any, is left as it was. A directory (or a
    link to one) at ``path`` raises ``IsADirectoryError``. Returns ``path``.
    """
    if mode not in ("wb", "w"):
        raise ValueError(f"mode must be 'wb' or 'w', got {mode!r}")
    text = _path_text(path)
    if os.path.isdir(text):
        raise IsADirectoryError(errno.EISDIR, "is a directory (or a link to one); refusing "
                                "to replace it with a file", text)
    directory, base = os.path.split(os.path.abspath(text))
    prefix, patterns = _temp_patterns(base)
    tmp = os.path.join(directory, f"{prefix}{secrets.token_hex(6)}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0),
                     0o666)
    except OSError as err:               # name the file asked for, not the temporary one
        reason = err.strerror or str(err)
        if err.errno == errno.ENOENT:
            reason = f"no such directory: {os.path.dirname(text) or '.'}"
        elif err.errno == errno.ENOTDIR:
            reason = f"not a directory: {os.path.dirname(text)}"
        raise type(err)(err.errno, reason, text) from None
    try:
        _hold(fd)                        # while held, no other writer takes it for stale
        kwargs = {"encoding": "utf-8"} if mode == "w" else {}
        with os.fdopen(fd, mode, **kwargs) as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, text)
    except BaseException:                # KeyboardInterrupt included: never leave the temp
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_directory(directory)
    _remove_stale_temps(directory, patterns, time.time())
    return os.fspath(path)


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
    _path_text(path)
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

@contextlib.contextmanager
def _reading(name, what):
    """Whatever a corrupt zip or .npy raises while reading ``what`` -> CheckpointError."""
    try:
        yield
    except CheckpointError:
        raise
    except Exception as err:        # BadZipFile, zlib.error, EOFError, OSError, ValueError,
        # struct.error, NotImplementedError, MemoryError, ...: only reading runs in here
        detail = str(err) if len(str(err)) <= 200 else str(err)[:197] + "..."
        raise CheckpointError(f"{name}: not a readable checkpoint, truncated or corrupt "
                              f"({what}: {type(err).__name__}: {detail})") from err


@contextlib.contextmanager
def _open_regular(name):
    """The file ``name`` opened for reading, refused unless it is a regular file."""
    try:
        info = os.stat(name)
    except FileNotFoundError:
        raise FileNotFoundError(errno.ENOENT, "no checkpoint at this path", name) from None
    if not stat.S_ISREG(info.st_mode):
        kind = _KINDS.get(stat.S_IFMT(info.st_mode), "not a regular file")
        raise CheckpointError(f"{name}: not a checkpoint ({kind}; a checkpoint is a regular "
                              "file)")
    # O_NONBLOCK: if a FIFO replaced the file since the stat, opening it must not block.
    flags = (os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
             | getattr(os, "O_NOCTTY", 0))
    fd = os.open(name, flags)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise CheckpointError(f"{name}: not a checkpoint (not a regular file)")
        file = os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
    with file:
        yield file


def _shown(names):
    names = sorted(n[:-4] if n.endswith(".npy") else n for n in names)
    return ", ".join(_shorten(n, 40) for n in names[:5]) + (", ..." if len(names) > 5 else "")


def _directory(infos, name, max_bytes):
    """The entries (name without .npy -> ZipInfo), checked before anything is inflated."""
    if len(infos) > _MAX_ENTRIES:
        raise CheckpointError(f"{name}: holds {len(infos)} entries, more than any checkpoint "
                              f"({_MAX_ENTRIES})")
    names = [info.filename for info in infos]
    if f"{HEADER}.npy" not in names:
        raise CheckpointError(f"{name}: not an lstm_ag checkpoint (no {HEADER!r} entry; it "
                              f"holds: {_shown(names) or 'nothing'})")
    seen, twice = set(), set()
    for entry in names:
        (twice if entry in seen else seen).add(entry)
    if twice:
        raise CheckpointError(f"{name}: the archive holds {_shown(twice)} more than once; "
                              "refused (which copy is meant is ambiguous)")
    unknown = [n for n in names if not _ENTRY_NAME.fullmatch(n)]
    if unknown:
        raise CheckpointError(f"{name}: unexpected entries {_shown(unknown)} (an lstm_ag "
                              f"checkpoint holds only {HEADER!r}, 'params/<name>' and "
                              "'meta/<n>' arrays, <name> one of Wx, Wh, b, Wy, by, "
                              "reverse.Wx, layers.0.Wx, layers.0.reverse.Wx, ...)")
    for info in infos:
        if info.flag_bits & 0x1:
            raise CheckpointError(f"{name}: entry {info.filename!r} is encrypted; refused")
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise CheckpointError(f"{name}: entry {info.filename!r} uses compression method "
                                  f"{info.compress_type}; only stored and deflated are read")
    total = sum(info.file_size for info in infos)
    if total > max_bytes:
        raise CheckpointError(f"{name}: its entries declare {total} bytes in all, more than "
                              f"the limit of {max_bytes} (load(..., max_bytes=...) raises "
                              "it); refused before inflating anything")
    header = infos[names.index(f"{HEADER}.npy")]
    if header.file_size > _HEADER_MAX_BYTES:
        raise CheckpointError(f"{name}: its header entry declares {header.file_size} bytes, "
                              f"more than any header ({_HEADER_MAX_BYTES}); refused")
    return {info.filename[:-4]: info for info in infos}


class _Counted:
    """A reader that counts the bytes read through it."""

    def __init__(self, file):
        self.file, self.count = file, 0

    def read(self, size=-1):
        data = self.file.read(size)
        self.count += len(data)
        return data


def _check_layout(name, entry, info, shape, dtype):
    """Refuse a dtype or shape no checkpoint holds, or a declared size that disagrees."""
    if dtype.hasobject:
        raise CheckpointError(f"{name}: entry {entry!r} is a pickled object array; refused "
                              "(checkpoints are never unpickled)")
    if (dtype.kind not in _ARRAY_KINDS or dtype.fields is not None
            or dtype.subdtype is not None):
        raise CheckpointError(f"{name}: entry {entry!r} has dtype {dtype}, which no "
                              "checkpoint holds")
    if len(shape) > _MAX_NDIM or not all(type(n) is int and n >= 0 for n in shape):
        raise CheckpointError(f"{name}: entry {entry!r} has an invalid shape {shape!r}")
    count = math.prod(shape)
    if count > _MAX_COUNT:
        raise CheckpointError(f"{name}: entry {entry!r} has shape {tuple(shape)}, more "
                              "elements than any checkpoint holds")
    nbytes = dtype.itemsize * count
    if info.file_size - nbytes not in _NPY_OVERHEAD:
        raise CheckpointError(f"{name}: entry {entry!r} declares {info.file_size} bytes, but "
                              f"its dtype {dtype} and shape {tuple(shape)} take {nbytes}; "
                              "refused before inflating it")
    return nbytes


def _npy_layout(zf, info, name, entry):
    """(shape, dtype) from an entry's .npy header, read before any of its data."""
    with _reading(name, f"the .npy header of {entry!r}"), zf.open(info) as member:
        counted = _Counted(member)
        version = onp.lib.format.read_magic(counted)
        if version == (1, 0):
            read_header = onp.lib.format.read_array_header_1_0
        elif version == (2, 0):
            read_header = onp.lib.format.read_array_header_2_0
        else:
            raise CheckpointError(f"{name}: entry {entry!r} is .npy version {version}, "
                                  "which no checkpoint uses")
        shape, _, dtype = read_header(counted, max_header_size=_NPY_HEADER_MAX)
    nbytes = _check_layout(name, entry, info, shape, dtype)
    if info.file_size != counted.count + nbytes:
        raise CheckpointError(f"{name}: entry {entry!r} declares {info.file_size} bytes, but "
                              f"its .npy header and data take {counted.count + nbytes}")
    return tuple(shape), dtype


def _read_entry(zf, info, name, entry, shape, dtype):
    """The array of an entry whose layout was checked; read no further than declared."""
    with _reading(name, f"entry {entry!r}"), zf.open(info) as member:
        array = onp.lib.format.read_array(member, allow_pickle=False,
                                          max_header_size=_NPY_HEADER_MAX)
        rest = member.read(1)              # b"" at the end; reaching it checks the CRC
    if array.dtype != dtype or array.shape != shape or rest:
        raise CheckpointError(f"{name}: entry {entry!r} changed while it was read")
    return array


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
        raise CheckpointError(f"{name}: the header's dtype of {_shorten(entry)} is "
                              f"{_shorten(text)}, not a dtype a checkpoint holds")
    try:
        return onp.dtype(text)
    except (TypeError, ValueError):
        raise CheckpointError(f"{name}: the header's dtype of {_shorten(entry)} is "
                              f"{_shorten(text)}, not a dtype numpy knows") from None


def _check_header(header, name):
    """(version, parameter names, arrays table or None, meta) of a well-formed header."""
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        found = header.get("format") if isinstance(header, dict) else type(header).__name__
        raise CheckpointError(f"{name}: not an lstm_ag checkpoint (format {_shorten(found)}, "
                              f"expected {FORMAT!r})")
    version = header.get("version")
    if type(version) is not int or not 1 <= version <= VERSION:
        raise CheckpointError(f"{name}: format version {_shorten(version)} is not supported "
                              f"(this lstm_ag reads versions 1 to {VERSION})")
    fields = {"format", "version", "params", "meta"} | ({"arrays"} if version >= 2 else set())
    if set(header) != fields:
        raise CheckpointError(f"{name}: the header lacks {sorted(fields - set(header))} and "
                              f"has unexpected {_shown(set(header) - fields)} fields")
    keys = header["params"]
    if (not isinstance(keys, list) or not keys or len(keys) > _MAX_ENTRIES
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
                    or len(layout["shape"]) > _MAX_NDIM
                    or not all(type(n) is int and n >= 0 for n in layout["shape"])):
                raise CheckpointError(f"{name}: the header's layout of {_shorten(entry)} is not "
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
                                          f"reference {_shorten(item)}")
                found.append(key)
            else:
                stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    if len(set(found)) != len(found):
        raise CheckpointError(f"{name}: the header refers to one array twice")
    return set(found)


def _shorten(value, width=60):
    """repr(value), cut to ``width`` characters: file contents never flood a message."""
    text = repr(value)
    return text if len(text) <= width else text[:width - 3] + "..."


def _decode(value, arrays):
    if isinstance(value, dict):
        if _ARRAY in value:
            return arrays[value[_ARRAY]]
        return {k: _decode(v, arrays) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode(v, arrays) for v in value]
    return value


def _read_header(zf, info, name):
    shape, dtype = _npy_layout(zf, info, name, HEADER)
    if dtype.kind != "U" or shape != ():
        raise CheckpointError(f"{name}: the {HEADER!r} entry is not a JSON string "
                              f"(dtype {dtype}, shape {shape})")
    raw = _read_entry(zf, info, name, HEADER, shape, dtype)
    with _reading(name, "the header text"):
        return str(raw[()])


def _load(file, name, max_bytes, check=None):
    head = file.read(8)
    file.seek(0)
    if head.startswith(b"\x93NUMPY"):
        raise CheckpointError(f"{name}: not an lstm_ag checkpoint (a single .npy array, not "
                              "an .npz archive)")
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        raise CheckpointError(f"{name}: holds pickled data; refused (checkpoints are never "
                              "unpickled)")
    with _reading(name, "the zip directory"):
        zf = zipfile.ZipFile(file)
    with zf:
        infos = _directory(zf.infolist(), name, max_bytes)
        header = _parse_header(_read_header(zf, infos[HEADER], name), name)
        version, keys, table, meta = _check_header(header, name)
        expected = {f"params/{k}" for k in keys} | _references(meta, name)
        held = set(infos) - {HEADER}
        if held != expected:
            raise CheckpointError(f"{name}: entries do not match the header (missing "
                                  f"[{_shown(expected - held)}], unexpected "
                                  f"[{_shown(held - expected)}])")
        if table is not None and set(table) != expected:
            raise CheckpointError(f"{name}: the header's 'arrays' lists {_shown(table)}, "
                                  f"its params and meta use {_shown(expected)}")
        if table is not None:        # sizes against the header, before opening any entry
            for entry, (shape, dtype) in table.items():
                _check_layout(name, entry, infos[entry], shape, dtype)
        layouts = {}
        for entry in sorted(expected, key=lambda e: (not e.startswith("params/"), e)):
            layouts[entry] = _npy_layout(zf, infos[entry], name, entry)
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
        flat = {k: _read_entry(zf, infos[f"params/{k}"], name, f"params/{k}",
                               *layouts[f"params/{k}"]) for k in keys}
        try:
            params = unflatten(flat)
            check_params(params)
        except (TypeError, ValueError) as err:
            raise CheckpointError(f"{name}: invalid parameters: {err}") from None
        arrays = {entry: _read_entry(zf, infos[entry], name, entry, *layouts[entry])
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
    name = _path_text(path)
    if type(max_bytes) is not int:
        raise TypeError(f"max_bytes must be an int, got {type(max_bytes).__name__}")
    if max_bytes < 1:
        raise ValueError(f"max_bytes must be at least 1, got {max_bytes}")
    if check is not None and not callable(check):
        raise TypeError(f"check must be callable or None, got {type(check).__name__}")
    with _open_regular(name) as file:
        return _load(file, name, max_bytes, check)
