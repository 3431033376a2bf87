"""The atomic file writer the whole project uses: all of a file or, after a crash, none of it.

:func:`atomic_write` guarantees:

* the write is atomic: the data goes to a temporary file ``.<first 16 characters of the
  name>.<8 hex digits of its hash>.<12 random hex digits>.tmp`` in the same directory (short
  enough beside any legal name), is fsynced, and moved into place with :func:`os.replace`;
  a crash leaves the old file or the new one, never half a file; on an exception the
  temporary file is removed;
* a writer holds an advisory lock (``flock``) on its temporary file until it is moved into
  place; temporary files that earlier writes of the same target left behind (a killed
  process: its lock went with it) are removed by the next write once they are older than
  ``LOCKED_GRACE_SECONDS`` (2 s) and their lock is free, and any older than
  ``STALE_SECONDS`` (30 minutes; the only rule where there is no flock): only regular files
  of this user whose names match that target's temporary-name pattern exactly, never one a
  live writer holds;
* a missing directory raises ``FileNotFoundError`` naming the target (not the temporary);
* a directory (or a symbolic link to one) at the target is refused with
  ``IsADirectoryError``, never replaced; a symbolic link to a file is replaced by the file.

It imports nothing of lstm_ag: :mod:`lstm_ag.checkpoint` writes through it, and so do the
trainer and the benchmarks (as ``lstm_ag.atomic_write``).
"""
import contextlib
import errno
import hashlib
import os
import re
import secrets
import stat
import time

try:
    import fcntl
except ImportError:                      # Windows: stale temporaries go by age alone
    fcntl = None

__all__ = ["atomic_write", "path_text", "STALE_SECONDS", "LOCKED_GRACE_SECONDS"]

#: Age (seconds since the last write) after which a temporary file of a write is stale
#: whatever its lock says (where locks are not kept, it is the only rule).
STALE_SECONDS = 30 * 60
#: Age after which a temporary file whose writer's lock is free is stale (its writer ended:
#: a killed process); younger ones are spared, the instant between a writer's creating the
#: file and locking it included.
LOCKED_GRACE_SECONDS = 2


def path_text(path, what="path"):
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
    text = path_text(path)
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
