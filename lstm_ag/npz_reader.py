"""A hardened reader of ``.npz`` archives: nothing unpickled, nothing inflated unchecked.

The file format of a checkpoint (its header, its entry names) is :mod:`lstm_ag.checkpoint`'s;
this module only reads zips of ``.npy`` arrays, refusing what no checkpoint holds:

* only a regular file is opened (a FIFO, a directory, a device is refused without blocking);
  a single ``.npy`` array or a pickle posing as a checkpoint is refused by its first bytes;
* the zip directory is read first, and, before anything is inflated, duplicate, unknown
  (the caller says which names are known), encrypted or oddly compressed entries are
  refused, and entries that declare more than ``max_bytes`` in all;
* an entry's ``.npy`` header (a few hundred bytes) is read before any of its data; object
  arrays, structured or subarray dtypes, and a declared size that disagrees with the dtype
  and shape are refused; an entry is then read no further than its declared size, its CRC
  checked;
* whatever a corrupt zip or ``.npy`` raises while it is read becomes :class:`CheckpointError`
  (a ``ValueError``) naming the file.

It imports nothing of lstm_ag: :mod:`lstm_ag.checkpoint` reads through it.
"""
import contextlib
import errno
import math
import os
import stat
import zipfile

import numpy as onp

__all__ = ["CheckpointError", "ARRAY_KINDS", "MAX_ENTRIES", "MAX_NDIM", "open_regular",
           "open_archive", "entries", "reading", "check_layout", "npy_layout", "read_entry",
           "shorten", "shown"]

#: The dtype kinds an entry may hold: booleans, numbers, strings, bytes, datetimes.
ARRAY_KINDS = "biufcSUmM"
#: The most entries an archive may hold, and the most dimensions an entry may have.
MAX_ENTRIES = 65536
MAX_NDIM = 64
_NPY_HEADER_MAX = 4096                # an entry's .npy header dictionary
_NPY_OVERHEAD = range(10, 12 + _NPY_HEADER_MAX + 1)   # magic, version, length, dictionary
_MAX_COUNT = 1 << 40
_KINDS = {stat.S_IFDIR: "a directory", stat.S_IFIFO: "a FIFO", stat.S_IFSOCK: "a socket",
          stat.S_IFCHR: "a character device", stat.S_IFBLK: "a block device",
          stat.S_IFLNK: "a symbolic link"}


class CheckpointError(ValueError):
    """A file is not a readable lstm_ag checkpoint (the message names the file)."""


@contextlib.contextmanager
def reading(name, what):
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
def open_regular(name):
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


def open_archive(file, name):
    """The :class:`zipfile.ZipFile` of the open ``file``, refused by its first bytes when
    it is a single ``.npy`` array or a pickle (named ``name`` in the messages)."""
    head = file.read(8)
    file.seek(0)
    if head.startswith(b"\x93NUMPY"):
        raise CheckpointError(f"{name}: not an lstm_ag checkpoint (a single .npy array, not "
                              "an .npz archive)")
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        raise CheckpointError(f"{name}: holds pickled data; refused (checkpoints are never "
                              "unpickled)")
    with reading(name, "the zip directory"):
        return zipfile.ZipFile(file)


def shown(names):
    names = sorted(n[:-4] if n.endswith(".npy") else n for n in names)
    return ", ".join(shorten(n, 40) for n in names[:5]) + (", ..." if len(names) > 5 else "")


def entries(infos, name, max_bytes, *, required, known, known_text):
    """The entries (name without .npy -> ZipInfo), checked before anything is inflated.

    - infos: ``ZipFile.infolist()``.
    - name: the file's name, for the messages.
    - max_bytes: the most bytes all entries may declare.
    - required: the entry (with ``.npy``) the archive must hold.
    - known: a compiled pattern every entry's name (with ``.npy``) must match in full;
      known_text: the sentence that lists what it matches.
    """
    if len(infos) > MAX_ENTRIES:
        raise CheckpointError(f"{name}: holds {len(infos)} entries, more than any checkpoint "
                              f"({MAX_ENTRIES})")
    names = [info.filename for info in infos]
    if required not in names:
        raise CheckpointError(f"{name}: not an lstm_ag checkpoint (no {required[:-4]!r} entry; "
                              f"it holds: {shown(names) or 'nothing'})")
    seen, twice = set(), set()
    for entry in names:
        (twice if entry in seen else seen).add(entry)
    if twice:
        raise CheckpointError(f"{name}: the archive holds {shown(twice)} more than once; "
                              "refused (which copy is meant is ambiguous)")
    unknown = [n for n in names if not known.fullmatch(n)]
    if unknown:
        raise CheckpointError(f"{name}: unexpected entries {shown(unknown)} ({known_text})")
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
    return {info.filename[:-4]: info for info in infos}


class _Counted:
    """A reader that counts the bytes read through it."""

    def __init__(self, file):
        self.file, self.count = file, 0

    def read(self, size=-1):
        data = self.file.read(size)
        self.count += len(data)
        return data


def check_layout(name, entry, info, shape, dtype):
    """Refuse a dtype or shape no checkpoint holds, or a declared size that disagrees."""
    if dtype.hasobject:
        raise CheckpointError(f"{name}: entry {entry!r} is a pickled object array; refused "
                              "(checkpoints are never unpickled)")
    if (dtype.kind not in ARRAY_KINDS or dtype.fields is not None
            or dtype.subdtype is not None):
        raise CheckpointError(f"{name}: entry {entry!r} has dtype {dtype}, which no "
                              "checkpoint holds")
    if len(shape) > MAX_NDIM or not all(type(n) is int and n >= 0 for n in shape):
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


def npy_layout(zf, info, name, entry):
    """(shape, dtype) from an entry's .npy header, read before any of its data."""
    with reading(name, f"the .npy header of {entry!r}"), zf.open(info) as member:
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
    nbytes = check_layout(name, entry, info, shape, dtype)
    if info.file_size != counted.count + nbytes:
        raise CheckpointError(f"{name}: entry {entry!r} declares {info.file_size} bytes, but "
                              f"its .npy header and data take {counted.count + nbytes}")
    return tuple(shape), dtype


def read_entry(zf, info, name, entry, shape, dtype):
    """The array of an entry whose layout was checked; read no further than declared."""
    with reading(name, f"entry {entry!r}"), zf.open(info) as member:
        array = onp.lib.format.read_array(member, allow_pickle=False,
                                          max_header_size=_NPY_HEADER_MAX)
        rest = member.read(1)              # b"" at the end; reaching it checks the CRC
    if array.dtype != dtype or array.shape != shape or rest:
        raise CheckpointError(f"{name}: entry {entry!r} changed while it was read")
    return array


def shorten(value, width=60):
    """repr(value), cut to ``width`` characters: file contents never flood a message."""
    text = repr(value)
    return text if len(text) <= width else text[:width - 3] + "..."
