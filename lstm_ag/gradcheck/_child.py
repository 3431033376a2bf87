"""The child process of :mod:`lstm_ag.gradcheck.sandbox`: imports a student's file and answers.

``python -m lstm_ag.gradcheck._child REQUESTS ANSWERS LIFELINE MEMORY_MB`` (file descriptors
from the parent). It limits its own address space, says hello, then serves one request at a
time -- ``import``, ``call``, ``getattr``, ``setattr`` -- until the parent kills it. It checks
nothing: every comparison and every verdict is made by the parent, which never imports the
student's file.
Objects that are not plain data stay here and travel as handles (an id in ``objects``).
"""
from __future__ import annotations

import inspect
import os
import signal
import sys
import threading
import types

from .__main__ import UsageError, _load, _where
from .sandbox import Garbled, decode, encode, receive, send

_objects: dict = {}                    # handle id -> object (kept alive: ids stay valid)
_ids: dict = {}                        # id(object) -> handle id
_path = None                           # the student's file, once imported


def _watch(lifeline):
    """Kill this process group when the parent goes (its end of the lifeline closes)."""
    try:
        while os.read(lifeline, 1):
            pass
    finally:
        os.killpg(os.getpgrp(), signal.SIGKILL)


def _limit_memory(mb):
    try:
        import resource
    except ImportError:                # not on this system: the time limit still holds
        return
    limit = mb * 2 ** 20
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))     # the hard one too: no way back
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def _signature(value):
    try:
        return [[p.name, int(p.kind), p.default is not inspect.Parameter.empty]
                for p in inspect.signature(value).parameters.values()]
    except (TypeError, ValueError):
        return None


def _handle(value):
    """The JSON a parent turns into a proxy of ``value`` (which stays here)."""
    key = id(value)
    if key not in _ids:
        _ids[key] = len(_objects) + 1
        _objects[_ids[key]] = value
    doc = getattr(value, "__doc__", None) if callable(value) else None
    module = getattr(value, "__module__", None)
    return {"__handle__": _ids[key], "kind": "class" if isinstance(value, type) else
            "function" if callable(value) else "object", "callable": callable(value),
            "type": type(value).__name__, "name": getattr(value, "__name__", None)
            if isinstance(getattr(value, "__name__", None), str) else None,
            "qualname": getattr(value, "__qualname__", None)
            if isinstance(getattr(value, "__qualname__", None), str) else None,
            "module": module if isinstance(module, str) else None,
            "doc": doc[:10_000] if isinstance(doc, str) else None,
            "signature": _signature(value) if callable(value) else None}


def _resolve(obj):
    hid = obj.get("__ref__")
    if hid not in _objects:
        raise Garbled("a reference to no object")
    return _objects[hid]


def _listing(module):
    """The module's names the parent lists at once: functions, classes, instances, scalars."""
    out = []
    for name, value in list(vars(module).items()):
        if name.startswith("__") or isinstance(value, types.ModuleType):
            continue
        try:
            if value is None or isinstance(value, (bool, int, float, str)):
                out.append([name, encode(value, _handle)])
            elif callable(value) or not (isinstance(value, (list, tuple, dict))
                                         or hasattr(value, "shape")):
                out.append([name, _handle(value)])
        except Exception:              # an object that cannot say what it is: fetched lazily
            continue
    return out


def _failure(err):
    """The answer for an exception of the student's code."""
    if isinstance(err, SystemExit):
        code = err.code
        return {"exit": code if code is None or isinstance(code, (int, str)) else repr(code)}
    where = _where(err, _path) if _path else f"{type(err).__name__}: {err}"
    if isinstance(err, MemoryError):
        return {"memory": where.replace("MemoryError:  (", "MemoryError (")}
    return {"raised": where, "type": type(err).__name__}


def _import(path):
    global _path
    try:
        module = _load(path)
    except UsageError as err:
        if isinstance(err.__context__, MemoryError):
            return {"memory": str(err).split("cannot be imported: ", 1)[-1]}
        return {"usage": str(err)}
    _path = module.__file__
    return {"module": _handle(module), "listing": _listing(module)}


def _call(message):
    target = _objects.get(message.get("target"))
    if target is None:
        raise Garbled("a call of no object")
    arrays = []
    args = decode(message.get("args", []), _resolve, arrays)
    kwargs = decode({"__dict__": [[k, v] for k, v in message.get("kwargs", {}).items()]},
                    _resolve, arrays)
    before = [a.tobytes() for a in arrays]
    try:
        result = target(*args, **kwargs)
    except BaseException as err:       # whatever the student's code raises, sys.exit included
        return _failure(err)
    changed = [[k, encode(a, _handle)] for k, (a, b) in enumerate(zip(arrays, before,
                                                                         strict=True))
               if a.tobytes() != b]
    return {"ok": encode(result, _handle), "changed": changed}


def _getattr(message):
    target = _objects.get(message.get("target"))
    name = message.get("name")
    if target is None or not isinstance(name, str):
        raise Garbled("an attribute of no object")
    try:
        value = getattr(target, name)
    except AttributeError as err:
        return {"attribute": str(err)}
    except BaseException as err:
        return _failure(err)
    return {"ok": encode(value, _handle)}


def _setattr(message):
    target = _objects.get(message.get("target"))
    name = message.get("name")
    if target is None or not isinstance(name, str):
        raise Garbled("an attribute of no object")
    value = decode(message.get("value"), _resolve)
    try:
        setattr(target, name, value)
    except BaseException as err:
        return _failure(err)
    return {"ok": None}


def _serve(message):
    op = message.get("op")
    if op == "hello":
        return {"hello": os.getpid()}
    if op == "import":
        return _import(str(message.get("path")))
    if op == "call":
        return _call(message)
    if op == "getattr":
        return _getattr(message)
    if op == "setattr":
        return _setattr(message)
    raise Garbled(f"an unknown request {op!r}")


def main(argv: list[str]) -> None:
    requests, answers, lifeline, memory_mb = (int(a) for a in argv)
    threading.Thread(target=_watch, args=(lifeline,), daemon=True).start()
    _limit_memory(memory_mb)
    while True:
        try:
            message = receive(requests)
        except EOFError:
            os._exit(0)
        try:
            answer = _serve(message)
        except MemoryError as err:
            answer = {"memory": f"MemoryError: {err}"}
        except Garbled as err:
            answer = {"raised": f"the checker sent a bad request ({err})", "type": "Garbled"}
        except Exception as err:       # an object of the student's that fails to be sent
            answer = {"raised": f"what your code returned cannot be sent back: "
                                f"{type(err).__name__}: {err}", "type": type(err).__name__}
        try:
            send(answers, answer)
        except MemoryError:
            send(answers, {"memory": "while sending back what your code returned"})


if __name__ == "__main__":
    main(sys.argv[1:])
