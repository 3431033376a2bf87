"""Checkpoints, round two (issue 22, items 6 and 7): metadata checked before any array is
inflated (a 1 MB file holding a 1 GiB zero array costs no memory to refuse), temporaries of
a dead writer removed within seconds and a live writer's never, ``save`` naming its target."""
import fcntl
import json
import os
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

import lstm_ag
from lstm_ag.atomic import _temp_patterns
from lstm_ag.checkpoint import LOCKED_GRACE_SECONDS, Layout

ROOT = Path(__file__).resolve().parent.parent
GIB_VALUES = 2**27                        # float64: 1 GiB


def _bomb(path, meta_name="junk"):
    """A legal checkpoint of a tiny model whose metadata ``meta_name`` refers to a 1 GiB
    float64 zero array (deflated: about 1 MB on disk), written without ever holding it."""
    params = lstm_ag.init_params(1, 2, 1, seed=0)
    arrays = {f"params/{k}": v for k, v in params.items()}
    table = {k: {"dtype": v.dtype.str, "shape": list(v.shape)} for k, v in arrays.items()}
    table["meta/0"] = {"dtype": "<f8", "shape": [GIB_VALUES]}
    header = {"format": "lstm_ag.checkpoint", "version": 2, "params": list(params),
              "arrays": table, "meta": {meta_name: {"__array__": "meta/0"}}}
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        for name, value in [("__lstm_ag__", np.array(json.dumps(header))), *arrays.items()]:
            with zf.open(f"{name}.npy", "w") as entry:
                np.lib.format.write_array(entry, value, allow_pickle=False)
        with zf.open("meta/0.npy", "w", force_zip64=True) as entry:
            np.lib.format.write_array_header_1_0(entry, {"descr": "<f8", "fortran_order": False,
                                                         "shape": (GIB_VALUES,)})
            zeros = bytes(2**24)
            for _ in range(GIB_VALUES * 8 // len(zeros)):
                entry.write(zeros)
    return path


@pytest.fixture(scope="module")
def bomb(tmp_path_factory):
    return _bomb(tmp_path_factory.mktemp("bomb") / "model.npz")


def _peak_rss_growth(call):
    """MiB by which the peak resident memory of a fresh process grows during ``call`` (code
    run after the imports), and what it printed."""
    script = ("import resource, sys\n"
              "import lstm_ag, train.loop\n"
              "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
              "try:\n"
              f"    {call}\n"
              "    print('loaded')\n"
              "except Exception as err:\n"
              "    print(type(err).__name__, err)\n"
              "after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
              "print((after - before) / 1024)\n")        # ru_maxrss: KiB on Linux
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    lines = done.stdout.splitlines()
    assert done.returncode == 0 and len(lines) == 2, done.stderr
    return float(lines[1]), lines[0]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="ru_maxrss in KiB: Linux")
def test_a_1_gib_array_behind_unknown_metadata_is_refused_without_inflating(bomb):
    assert bomb.stat().st_size < 2 * 2**20                 # about 1 MB on disk
    growth, said = _peak_rss_growth(f"train.loop.load_checkpoint({str(bomb)!r})")
    assert said.startswith(f"CheckpointError {bomb}: not a checkpoint of this trainer "
                           "(its metadata lacks ['config'"), said
    assert growth < 64, f"peak RSS grew by {growth:.0f} MiB before refusing"


def test_check_sees_the_metadata_and_layouts_before_any_array(bomb):
    seen = []

    def check(meta, params):
        seen.append((meta, params))
        raise lstm_ag.CheckpointError(f"{bomb}: refused by the caller")
    with pytest.raises(lstm_ag.CheckpointError, match="refused by the caller"):
        lstm_ag.load(bomb, check=check)
    (meta, params), = seen
    assert meta == {"junk": Layout((GIB_VALUES,), np.dtype("<f8"))}
    assert params["Wh"] == Layout((2, 8), np.dtype(np.float64))
    assert sorted(params) == ["Wh", "Wx", "Wy", "b", "by"]
    with pytest.raises(TypeError, match="check must be callable"):
        lstm_ag.load(bomb, check=5)


def test_a_check_that_passes_changes_nothing(tmp_path):
    path = lstm_ag.save(tmp_path / "m.npz", lstm_ag.init_params(2, 3, 1), step=3,
                        buffer=np.arange(4.0))
    seen = []
    params, meta = lstm_ag.load(path, check=lambda meta, params: seen.append(meta))
    assert seen == [{"step": 3, "buffer": Layout((4,), np.dtype(np.float64))}]
    assert meta["step"] == 3 and np.array_equal(meta["buffer"], np.arange(4.0))


def _temp(directory, base, suffix, age):
    prefix, _ = _temp_patterns(base)
    path = directory / f"{prefix}{suffix}.tmp"
    path.write_bytes(b"half a checkpoint")
    os.utime(path, (time.time() - age, time.time() - age))
    return path


def test_a_dead_writer_s_temporary_goes_within_seconds_a_live_one_stays(tmp_path):
    dead = _temp(tmp_path, "model.npz", "aaaaaaaaaaaa", LOCKED_GRACE_SECONDS + 8)
    young = _temp(tmp_path, "model.npz", "bbbbbbbbbbbb", 0)
    live = _temp(tmp_path, "model.npz", "cccccccccccc", LOCKED_GRACE_SECONDS + 8)
    holder = subprocess.Popen(                           # another writer, alive, holding it
        [sys.executable, "-c", ("import fcntl, os, sys, time\n"
                                f"fd = os.open({str(live)!r}, os.O_WRONLY)\n"
                                "fcntl.flock(fd, fcntl.LOCK_EX)\nprint('held', flush=True)\n"
                                "time.sleep(60)\n")],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "held\n"
        lstm_ag.save(tmp_path / "model.npz", lstm_ag.init_params(1, 2))
        assert not dead.exists()                         # its writer ended: removed
        assert young.exists() and live.exists()          # maybe being written: kept
    finally:
        holder.kill()
        holder.communicate()
    lstm_ag.save(tmp_path / "model.npz", lstm_ag.init_params(1, 2))
    assert not live.exists() and young.exists()          # its writer ended too


def test_a_writer_holds_its_temporary_while_it_writes(tmp_path):
    seen = []

    def write(file):                     # another open file of the temporary: its lock is held
        with open(f"/proc/self/fd/{file.fileno()}", "rb") as other:
            try:
                fcntl.flock(other.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                seen.append("free")
            except BlockingIOError:
                seen.append("held")
        file.write(b"content")
    if not os.path.isdir("/proc/self/fd"):
        pytest.skip("no /proc")
    lstm_ag.atomic_write(tmp_path / "f.bin", write)
    assert seen == ["held"] and (tmp_path / "f.bin").read_bytes() == b"content"


def test_save_into_a_missing_directory_names_the_target(tmp_path):
    target = tmp_path / "no" / "such" / "model.npz"
    with pytest.raises(FileNotFoundError) as caught:
        lstm_ag.save(target, lstm_ag.init_params(1, 2))
    assert caught.value.filename == str(target)
    assert str(caught.value) == (f"[Errno 2] no such directory: {tmp_path / 'no' / 'such'}: "
                                 f"'{target}'")
    assert ".tmp" not in str(caught.value)
    (tmp_path / "file").write_text("x")
    with pytest.raises(NotADirectoryError) as caught:
        lstm_ag.atomic_write(tmp_path / "file" / "m.npz", lambda f: f.write(b""))
    assert caught.value.filename == str(tmp_path / "file" / "m.npz")
