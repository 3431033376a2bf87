"""Running a student's code in a child process, with a time limit per call and a memory limit.

::

    with Sandbox(timeout=5.0, memory_mb=2048) as box:
        module = box.load("my_lstm.py")        # a proxy of the module imported in the child
        report = check_step(module.lstm_step_forward, module.lstm_step_backward)

**The checker never runs in the child.** The child (``python -m lstm_ag.gradcheck._child``)
imports the student's file and then only answers requests: "call this function with these
arrays", "give me this attribute". Everything else -- the random problem, autograd's and the
finite differences' references, the comparison, the diagnosis, the report and its verdict --
runs in this (the parent) process, which never imports the student's file. So a file that
monkeypatches ``GradientReport``, ``check_step``, numpy or anything else patches them in the
child only, where no verdict is made; the most it can do is return (or forge, on the channel)
values, and a value passes only when it equals the gradient the parent computed itself.

What crosses between the processes is JSON, validated on arrival: numbers, strings, lists,
tuples, dicts and numeric arrays (``dtype``, ``shape`` and base64 bytes, checked against each
other; never an object array, never a pickle). Anything else a function returns (a cache
object, a class instance) stays in the child and comes back as a handle, which the parent can
pass back, call, read or set attributes of. Arrays the parent passed that the call changed in
place are copied back into the parent's arrays, so a check that compares its inputs before and
after each call sees the change. An attribute read from the child is a copy: to change an
object's array there, set the attribute (``model.Wx = new``), not its entries.

Each request waits at most ``timeout`` seconds; the child is limited to ``memory_mb`` of
address space (``RLIMIT_AS``), runs in its own session (a Ctrl-C at the terminal reaches the
parent only) and is killed with its whole process group when the parent is done, stops or
dies (a thread in the child watches a pipe the parent holds). What the student's code prints
is drained as it comes (the child never blocks on a full pipe) and kept up to a limit.
"""
from __future__ import annotations

import base64
import contextlib
import inspect
import json
import math
import os
import re
import select
import signal
import site
import subprocess
import sys
import threading
import time
import types
from typing import Any

import numpy as np

__all__ = ["AVAILABLE", "Sandbox", "Stopped", "RemoteRaised", "UserFileError", "Garbled",
           "default_timeout", "DEFAULT_MEMORY_MB", "OUTPUT_LIMIT", "encode", "decode", "send",
           "receive"]

#: The child's address-space limit when ``--memory`` is not given.
DEFAULT_MEMORY_MB = 2048
#: How many bytes of each of the student's streams (stdout, stderr) are kept and shown.
OUTPUT_LIMIT = 20_000
#: The largest message either side accepts (a header saying more is refused unread): a
#: sequence's caches at H = 256, T = 100, B = 32 are about 90 MB as base64.
MAX_MESSAGE = 1 << 28
#: How long the child may take to start (our imports, before any of the student's code runs).
STARTUP_SECONDS = 120.0
#: Whether this system runs the child (POSIX: sessions, process groups, select on pipes).
AVAILABLE = os.name == "posix"
_DTYPE = re.compile(r"[<>|=]?[biufc][0-9]{1,2}")
_DEPTH = 64


def default_timeout(T: int, B: int, D: int, H: int) -> float:
    """Seconds per call of the student's code: 5 s plus a numpy loop's time at 5e7 multiply-adds
    per second over ``T * B * H * (D + H)`` (16 s at H = 256, T = 100, B = 32, D = H)."""
    return round(5.0 + T * B * H * (D + H) / 2e7, 1)


class Stopped(BaseException):
    """The child stopped answering: it timed out, exited, was killed, exhausted its memory or
    garbled the channel. A BaseException, so no ``except Exception`` around a call of the
    student's code takes it for an ordinary error of that code.

    - kind: ``"timeout"``, ``"exit"``, ``"signal"``, ``"memory"``, ``"garbled"``, ``"start"``.
    - stage: ``"import"`` (while importing the file) or ``"call"``.
    - str(): one line, e.g. ``timed out after 2 s in lstm_step_backward``.
    """

    def __init__(self, kind: str, stage: str, message: str):
        super().__init__(message)
        self.kind, self.stage = kind, stage


class RemoteRaised(Exception):
    """The student's function raised in the child; ``where`` is ``Type: message (file line
    N)``, ``type_name`` the exception's class name."""

    def __init__(self, where: str, type_name: str):
        super().__init__(where)
        self.where, self.type_name = where, type_name


class UserFileError(Exception):
    """The student's file cannot be imported (the message says why, naming the file)."""


class Garbled(ValueError):
    """A message that is not what the protocol allows."""


# ---------------------------------------------------------------- values as JSON

def _array_out(value):
    a = np.asarray(value)
    return {"__nd__": base64.b64encode(np.ascontiguousarray(a).tobytes()).decode("ascii"),
            "dtype": a.dtype.str, "shape": list(a.shape)}


def _encodable_array(value):
    return (isinstance(value, (np.ndarray, np.generic)) and value.dtype.kind in "biufc"
            and value.dtype.fields is None)


def encode(value: Any, other, arrays: list | None = None, depth: int = 0) -> Any:
    """``value`` as JSON-able data: numbers, strings, lists, tuples, dicts, numeric arrays;
    ``other(value)`` for anything else (the child: a handle; the parent: a reference).
    ``arrays`` collects the ndarrays met, in order (for the in-place write-back)."""
    if value is None or isinstance(value, (bool, str)) or type(value) is int:
        return value
    if type(value) is float:
        return value
    if _encodable_array(value):
        if isinstance(value, np.ndarray):
            if arrays is not None:
                arrays.append(value)
            return _array_out(value)
        return dict(_array_out(value), scalar=True)
    if depth > _DEPTH:
        return other(value)
    if type(value) in (list, tuple):
        items = [encode(v, other, arrays, depth + 1) for v in value]
        return items if type(value) is list else {"__tuple__": items}
    if type(value) is dict:
        return {"__dict__": [[encode(k, other, None, depth + 1),
                              encode(v, other, arrays, depth + 1)] for k, v in value.items()]}
    return other(value)


def _array_in(obj):
    dtype, shape = obj.get("dtype"), obj.get("shape")
    if not (isinstance(dtype, str) and _DTYPE.fullmatch(dtype) and isinstance(shape, list)
            and all(type(n) is int and n >= 0 for n in shape) and len(shape) <= 32):
        raise Garbled("an array with a bad dtype or shape")
    dtype = np.dtype(dtype)
    try:
        data = base64.b64decode(obj["__nd__"], validate=True)
    except (TypeError, ValueError):
        raise Garbled("an array whose data is not base64") from None
    if len(data) != math.prod(shape) * dtype.itemsize:
        raise Garbled("an array whose data does not fill its shape")
    return np.frombuffer(data, dtype).reshape(shape).copy()


def decode(obj: Any, resolve, arrays: list | None = None, depth: int = 0) -> Any:
    """The value :func:`encode` made, validated; ``resolve(obj)`` for handles and references.
    Raises :class:`Garbled` for anything else."""
    if obj is None or isinstance(obj, (bool, str, float)) or type(obj) is int:
        return obj
    if depth > _DEPTH + 2:
        raise Garbled("nested too deeply")
    if isinstance(obj, list):
        return [decode(v, resolve, arrays, depth + 1) for v in obj]
    if not isinstance(obj, dict):
        raise Garbled(f"a {type(obj).__name__}")
    if "__nd__" in obj:
        a = _array_in(obj)
        if obj.get("scalar") is True:
            return a[()]
        if arrays is not None:
            arrays.append(a)
        return a
    if "__tuple__" in obj and isinstance(obj["__tuple__"], list):
        return tuple(decode(v, resolve, arrays, depth + 1) for v in obj["__tuple__"])
    if "__dict__" in obj and isinstance(obj["__dict__"], list):
        out = {}
        for pair in obj["__dict__"]:
            if not (isinstance(pair, list) and len(pair) == 2):
                raise Garbled("a dict entry that is not a pair")
            key = decode(pair[0], resolve, None, depth + 1)
            try:
                hash(key)
            except TypeError:
                raise Garbled("a dict key that cannot be a key") from None
            out[key] = decode(pair[1], resolve, arrays, depth + 1)
        return out
    if "__handle__" in obj or "__ref__" in obj:
        return resolve(obj)
    raise Garbled("an object of unknown kind")


# ---------------------------------------------------------------- framing

def send(fd: int, message: dict, deadline: float | None = None) -> None:
    """Write ``message`` as a length line and JSON to ``fd`` (waiting for room until
    ``deadline``, a ``time.monotonic()``; TimeoutError after it)."""
    body = json.dumps(message, separators=(",", ":")).encode()
    data = memoryview(b"%d\n" % len(body) + body)
    while data:
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([], [fd], [], left)[1]:
                raise TimeoutError
        data = data[os.write(fd, data[:1 << 16]):]


class _Reader:
    """Messages from ``fd``: ``next(deadline, alive)`` returns a parsed dict, or raises
    TimeoutError, EOFError (the writer is gone) or :class:`Garbled`."""

    def __init__(self, fd: int):
        self.fd, self.buffer = fd, bytearray()

    def _parse(self):
        end = self.buffer.find(b"\n", 0, 21)
        if end < 0:
            if len(self.buffer) > 20:
                raise Garbled("a message without a length line")
            return None
        head = bytes(self.buffer[:end])
        if not head.isdigit():
            raise Garbled("a message with a bad length line")
        if int(head) > MAX_MESSAGE:
            raise Garbled(f"a message of {int(head):,} bytes, more than {MAX_MESSAGE:,}")
        size = int(head)
        if len(self.buffer) < end + 1 + size:
            return None
        body = bytes(self.buffer[end + 1:end + 1 + size])
        del self.buffer[:end + 1 + size]
        try:
            message = json.loads(body)
        except (ValueError, RecursionError):
            raise Garbled("a message that is not JSON") from None
        if not isinstance(message, dict):
            raise Garbled("a message that is not an object")
        return message

    def next(self, deadline: float | None = None, alive=None) -> dict:
        while True:
            message = self._parse()
            if message is not None:
                return message
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise TimeoutError
            wait = 0.2 if left is None else min(left, 0.2)
            if select.select([self.fd], [], [], wait)[0]:
                chunk = os.read(self.fd, 1 << 20)
                if not chunk:
                    raise EOFError
                self.buffer += chunk
            elif alive is not None and not alive():
                raise EOFError


def receive(fd: int) -> dict:
    """One message from ``fd``, blocking (the child's side)."""
    return _Reader(fd).next()


# ---------------------------------------------------------------- the student's output

class _Drain(threading.Thread):
    """Reads a stream to its end, keeping its first ``limit`` bytes and counting all."""

    def __init__(self, stream, limit):
        super().__init__(daemon=True)
        self.stream, self.limit, self.head, self.total = stream, limit, bytearray(), 0

    def run(self):
        try:
            while chunk := self.stream.read1(1 << 16):
                self.total += len(chunk)
                if len(self.head) < self.limit:
                    self.head += chunk[:self.limit - len(self.head)]
        except (OSError, ValueError):
            pass

    def text(self) -> str:
        """What was kept, and a line saying how much more there was."""
        text = self.head.decode("utf-8", "replace")
        if self.total > len(self.head):
            text += (f"\n[lstm-ag-gradcheck: your code printed {self.total:,} bytes here; the "
                     f"first {len(self.head):,} are shown]\n")
        return text


# ---------------------------------------------------------------- proxies of the child's objects

_REMOTE_DEFAULT = object()


def _signature(spec):
    """An inspect.Signature from the child's ``[[name, kind, has_default], ...]``, or None."""
    if not isinstance(spec, list):
        return None
    try:
        return inspect.Signature([
            inspect.Parameter(name, inspect._ParameterKind(kind),
                              default=_REMOTE_DEFAULT if has_default else inspect.Parameter.empty)
            for name, kind, has_default in spec])
    except (TypeError, ValueError):
        return None


def _text(value, limit=10_000):
    return value[:limit] if isinstance(value, str) else None


class RemoteObject:
    """An object living in the child: attributes are read there (``proxy.name``)."""

    def __init__(self, box, meta):
        d = self.__dict__
        d["_box"], d["_id"], d["_type"] = box, meta["__handle__"], _text(meta.get("type"))
        d["__name__"] = _text(meta.get("name")) or d["_type"] or "object"
        d["__qualname__"] = _text(meta.get("qualname")) or d["__name__"]
        d["__module__"] = _text(meta.get("module"))
        d["__doc__"] = _text(meta.get("doc"))

    def __getattr__(self, name):
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        return self._box.getattr(self._id, name, f"{self.__qualname__}.{name}")

    def __setattr__(self, name, value):
        self._box.setattr(self._id, name, value, f"{self.__qualname__}.{name}")

    def __repr__(self):
        return f"<{self._type} {self.__qualname__} (in the checked file's process)>"


class RemoteFunction(RemoteObject):
    """A callable living in the child: a call sends the arguments there and waits."""

    def __init__(self, box, meta):
        super().__init__(box, meta)
        signature = _signature(meta.get("signature"))
        if signature is not None:
            self.__dict__["__signature__"] = signature

    def __call__(self, *args, **kwargs):
        return self._box.call(self._id, args, kwargs, self.__qualname__)


class _RemoteType(type):
    """The metaclass of a class living in the child: instantiating it calls it there."""

    def __call__(cls, *args, **kwargs):
        return cls._box.call(cls._id, args, kwargs, cls.__qualname__)

    def __getattr__(cls, name):
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        return cls._box.getattr(cls._id, name, f"{cls.__qualname__}.{name}")


def _remote_class(box, meta):
    name = _text(meta.get("name")) or "RemoteClass"
    if not name.isidentifier():
        name = "RemoteClass"
    cls = _RemoteType(name, (), {"_box": box, "_id": meta["__handle__"],
                                 "__module__": _text(meta.get("module")),
                                 "__doc__": _text(meta.get("doc"))})
    cls.__qualname__ = _text(meta.get("qualname")) or name
    return cls


# ---------------------------------------------------------------- the child process

class Sandbox:
    """A child process that imports the student's file and runs its functions on request.

    - timeout: seconds each request (the import, each call) may take; the child is killed
      after it and :class:`Stopped` raised (``kind="timeout"``).
    - memory_mb: the child's address-space limit (``RLIMIT_AS``; MemoryError in the child).
    - output_limit: bytes kept of each of the student's streams (:meth:`printed`).
    Use it as a context manager: leaving it kills the child and all it started.
    """

    def __init__(self, timeout: float, memory_mb: int = DEFAULT_MEMORY_MB,
                 output_limit: int = OUTPUT_LIMIT):
        if not (isinstance(timeout, (int, float)) and math.isfinite(timeout) and timeout > 0):
            raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
        if isinstance(memory_mb, bool) or not isinstance(memory_mb, int) or memory_mb < 64:
            raise ValueError(f"memory_mb must be an integer >= 64, got {memory_mb!r}")
        self.timeout, self.memory_mb, self.output_limit = timeout, memory_mb, output_limit
        self.proc = None
        self.path = None
        self._proxies = {}
        self._lock = threading.Lock()
        self._stopped = None
        self._killed = False

    # -- lifetime
    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.close()

    def start(self) -> None:
        """Start the child and wait until it is ready (our imports done, nothing of yours)."""
        requests, self._to_child = os.pipe()
        self._from_child, answers = os.pipe()
        lifeline, self._lifeline = os.pipe()
        env = dict(os.environ)
        for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            env.setdefault(name, "1")
        env["PYTHONUNBUFFERED"] = "1"           # a print before a hang is not lost
        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        if root not in (*site.getsitepackages(), site.getusersitepackages()):
            # lstm_ag from a source tree: the child imports the same one
            env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "lstm_ag.gradcheck._child", str(requests), str(answers),
                 str(lifeline), str(self.memory_mb)],
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                pass_fds=(requests, answers, lifeline), start_new_session=True, env=env)
        finally:
            for fd in (requests, answers, lifeline):
                os.close(fd)
        self._drains = [_Drain(self.proc.stdout, self.output_limit),
                        _Drain(self.proc.stderr, self.output_limit)]
        for d in self._drains:
            d.start()
        self._reader = _Reader(self._from_child)
        self._ask({"op": "hello"}, "starting", "start", STARTUP_SECONDS)

    def close(self) -> None:
        """Kill the child and everything it started; keep what it printed."""
        if self.proc is None:
            return
        self._kill()
        for d in self._drains:
            d.join(timeout=2.0)
            if not d.is_alive():       # else a process that left the group holds the pipe
                d.stream.close()
        for fd in (self._to_child, self._from_child, self._lifeline):
            with contextlib.suppress(OSError):
                os.close(fd)
        self.proc = None

    def _kill(self):
        """SIGKILL the child's process group, once (its id could be reused afterwards)."""
        if self._killed:
            return
        self._killed = True
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):     # a zombie that stays: leave it
            self.proc.wait(timeout=10)

    def printed(self) -> tuple[str, str]:
        """``(stdout, stderr)`` of the student's code so far, each cut at ``output_limit``
        bytes with a line saying how much there was."""
        if not hasattr(self, "_drains"):
            return "", ""
        return self._drains[0].text(), self._drains[1].text()

    # -- requests
    def load(self, path: str) -> types.ModuleType:
        """The student's file imported in the child, as a module of proxies: its functions and
        classes are listed (``vars(module)``), other names are fetched on first use.
        UserFileError when it cannot be imported; Stopped when the child stops."""
        self.path = path
        answer = self._ask({"op": "import", "path": path},
                           f"while importing {os.path.basename(path)}", "import")
        if "usage" in answer:
            raise UserFileError(str(answer["usage"]))
        meta = answer.get("module")
        listing = answer.get("listing")
        if not (isinstance(meta, dict) and isinstance(listing, list)):
            self._garbled("import", "an import answer without its module")
        module = types.ModuleType(str(meta.get("name") or "user"))
        module.__file__ = path
        for entry in listing:
            if isinstance(entry, list) and len(entry) == 2 and isinstance(entry[0], str):
                setattr(module, entry[0], self._decode(entry[1], "import"))
        handle = meta.get("__handle__")

        def fetch(name):                       # PEP 562: names not listed at import
            if name.startswith("__") and name.endswith("__"):
                raise AttributeError(name)
            return self.getattr(handle, name, name)
        module.__getattr__ = fetch
        return module

    def call(self, target: int, args: tuple, kwargs: dict, what: str) -> Any:
        """``target(*args, **kwargs)`` in the child; the arrays it changed in place copied
        back into ``args``. Raises what the call raised (RemoteRaised, SystemExit) or Stopped."""
        sent = []
        message = {"op": "call", "target": target,
                   "args": [self._encode(a, sent) for a in args],
                   "kwargs": {str(k): self._encode(v, sent) for k, v in kwargs.items()}}
        answer = self._ask(message, f"in {what}", "call")
        self._write_back(answer.get("changed", []), sent)
        return self._result(answer, "call")

    def getattr(self, target: int, name: str, what: str) -> Any:
        """``getattr(target, name)`` in the child (AttributeError when it has none)."""
        answer = self._ask({"op": "getattr", "target": target, "name": name},
                           f"reading {what}", "call")
        if "attribute" in answer:
            raise AttributeError(str(answer["attribute"]))
        return self._result(answer, "call")

    def setattr(self, target: int, name: str, value: Any, what: str) -> None:
        """``setattr(target, name, value)`` in the child (value sent as for a call)."""
        answer = self._ask({"op": "setattr", "target": target, "name": name,
                            "value": self._encode(value, [])}, f"setting {what}", "call")
        self._result(answer, "call")

    def _result(self, answer, stage):
        if "ok" in answer:
            return self._decode(answer["ok"], stage)
        if "raised" in answer:
            raise RemoteRaised(str(answer["raised"]), str(answer.get("type", "Exception")))
        if "exit" in answer:
            code = answer["exit"]
            raise SystemExit(code if code is None or isinstance(code, (int, str)) else str(code))
        self._garbled(stage, "an answer of unknown kind")

    def _encode(self, value, sent):
        def reference(v):
            if isinstance(v, RemoteObject):
                return {"__ref__": v._id}
            if isinstance(v, _RemoteType):
                return {"__ref__": v._id}
            raise TypeError(f"cannot pass a {type(v).__name__} to your code in its process")
        return encode(value, reference, sent)

    def _decode(self, obj, stage):
        def resolve(meta):
            hid = meta.get("__handle__")
            if type(hid) is not int:
                raise Garbled("a handle without an id")
            if hid not in self._proxies:
                kind = meta.get("kind")
                self._proxies[hid] = (_remote_class(self, meta) if kind == "class" else
                                      RemoteFunction(self, meta) if meta.get("callable") else
                                      RemoteObject(self, meta))
            return self._proxies[hid]
        try:
            return decode(obj, resolve)
        except Garbled as err:
            self._garbled(stage, str(err))

    def _write_back(self, changed, sent):
        if not isinstance(changed, list):
            self._garbled("call", "a bad list of changed arrays")
        for entry in changed:
            if not (isinstance(entry, list) and len(entry) == 2 and type(entry[0]) is int
                    and 0 <= entry[0] < len(sent)):
                self._garbled("call", "a bad changed array")
            value = self._decode(entry[1], "call")
            target = sent[entry[0]]
            if (isinstance(value, np.ndarray) and value.shape == target.shape
                    and target.flags.writeable):
                np.copyto(target, value, casting="unsafe")

    def _ask(self, message, what, stage, timeout=None):
        """Send a request and wait for its answer; the child's problems raised as Stopped."""
        with self._lock:
            if self._stopped is not None:
                raise self._stopped
            timeout = self.timeout if timeout is None else timeout
            deadline = time.monotonic() + timeout
            try:
                send(self._to_child, message, deadline)
                answer = self._reader.next(deadline, lambda: self.proc.poll() is None)
            except TimeoutError:
                self._stop("timeout", stage, f"timed out after {timeout:.3g} s {what} (your code "
                           "did not return: a loop that never ends? --timeout gives it more)")
            except (EOFError, BrokenPipeError):
                self._gone(stage, what)
            except Garbled as err:
                self._garbled(stage, str(err))
            if "memory" in answer:
                self._stop("memory", stage, f"exhausted memory (limit {self.memory_mb} MB) "
                           f"{what}: {answer['memory']}")
            return answer

    def _gone(self, stage, what):
        try:
            code = self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            code = None
        if stage == "start":
            last = self._drains[1].head.decode("utf-8", "replace").strip().splitlines()
            self._stop("start", stage, "the checker's child process failed to start"
                       + (f": {last[-1]}" if last else ""))
        if code is not None and code < 0:
            name = signal.Signals(-code).name if -code in signal.valid_signals() else -code
            memory = (f" (out of memory? the limit is {self.memory_mb} MB)"
                      if name in ("SIGKILL", "SIGSEGV", "SIGABRT", "SIGBUS") else "")
            self._stop("signal", stage, f"was killed by {name} {what}{memory}: nothing was "
                       "checked")
        status = "" if code is None else f" with status {code}"
        self._stop("exit", stage, f"exited{status} {what} before returning (os._exit? a "
                   "closed channel?): nothing was checked")

    def _garbled(self, stage, problem):
        self._stop("garbled", stage, f"garbled the checker's channel ({problem}): your code "
                   "wrote to a file descriptor it does not own?")

    def _stop(self, kind, stage, message):
        self._stopped = Stopped(kind, stage, message)
        self._kill()
        raise self._stopped
