"""The command line lstm-ag-gradcheck (python -m lstm_ag.gradcheck) on students' files.

Exit status 0 when everything agrees, 1 when something is wrong (or the user's code raised),
2 for usage: one line on stderr, never a traceback.
"""
import csv
import json
import os
import re
import subprocess
import sys
import time

import pytest
from students.mutate import HERE, load, mutated_source
from test_gradcheck_sandbox import gone

import lstm_ag
from lstm_ag.gradcheck.__main__ import main

STEP = str(HERE / "cs231n_step.py")
LOOP = str(HERE / "sequence_loop.py")


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_a_correct_step_file_exits_0(capsys):
    assert main(["--step", STEP, "--gate-order", "ifog"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"checking {STEP}: lstm_step_forward and lstm_step_backward, gate "
                          "order ifog, N=2 D=3 H=8 seed=0\n")
    assert "dWx[i]" in out and "dprev_c" in out and "diagnosis" not in out
    assert out.splitlines()[-1].startswith("OK: worst")


def test_a_step_file_with_a_bug_exits_1_and_says_what_it_is(tmp_path, capsys):
    path = write(tmp_path, "my_lstm.py", mutated_source(
        "cs231n_step.py", "dprev_c = dc * f", "dprev_c = dc"))
    assert main(["--step", path, "--gate-order", "ifog", "--batch", "3"]) == 1
    out = capsys.readouterr().out
    assert "diagnosis:\n  - dprev_c is missing the forget gate" in out
    assert out.splitlines()[-1].startswith("MISMATCH: worst dprev_c")


def test_a_step_file_checked_in_the_wrong_gate_order_is_told_the_right_one(capsys):
    assert main(["--step", STEP]) == 1
    out = capsys.readouterr().out
    assert "pass gate_order='ifog'" in out and "dWx[i]" not in out      # no gradient blamed


def test_other_function_names(tmp_path, capsys):
    text = (HERE / "cs231n_step.py").read_text()
    text = text.replace("def lstm_step_forward(", "def step_fwd(").replace(
        "def lstm_step_backward(", "def step_bwd(").replace(
        "lstm_step_forward(x[:, t]", "step_fwd(x[:, t]").replace(
        "lstm_step_backward(dh[:, t]", "step_bwd(dh[:, t]")
    path = write(tmp_path, "renamed.py", text)
    assert main(["--step", path, "--forward", "step_fwd", "--backward", "step_bwd",
                 "--gate-order", "ifog"]) == 0
    assert main(["--step", path, "--gate-order", "ifog"]) == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines() == [
        (f"lstm-ag-gradcheck: error: {path} defines no function 'lstm_step_forward' "
         "(--forward); it defines: lstm_backward, lstm_forward, sigmoid, step_bwd, step_fwd; "
         "did you mean 'lstm_forward'?")]


@pytest.mark.parametrize(("upstream", "name"), [("all", "backward_all"),
                                                ("last", "backward_last")])
def test_a_correct_sequence_file_exits_0(capsys, upstream, name):
    assert main(["--sequence", LOOP, "--backward", name, "--upstream", upstream,
                 "--steps", "3", "--hidden-size", "4"]) == 0
    out = capsys.readouterr().out
    assert f"{name}, upstream {upstream}, layout dict" in out.splitlines()[0]
    assert out.splitlines()[-1].startswith("OK: worst")


def test_a_sequence_file_with_notebook_001s_bug_exits_1(tmp_path, capsys):
    path = write(tmp_path, "loop.py", mutated_source(
        "sequence_loop.py", "return np.array(hs), caches", "        return np.array(hs), caches"))
    assert main(["--sequence", path, "--backward", "backward_last", "--upstream", "last",
                 "--steps", "3", "--hidden-size", "4"]) == 1
    out = capsys.readouterr().out
    assert "Your gradients are those of the first step alone" in out
    assert "first wrong at sequence length 2:" in out
    assert out.splitlines()[-1].startswith("MISMATCH") and "first wrong at length 2" in out


def test_user_code_that_raises_exits_1_naming_file_and_line(tmp_path, capsys):
    text = mutated_source("cs231n_step.py", "dWh = prev_h.T @ da", "dWh = prev_h @ da")
    line = text.splitlines().index("    dWh = prev_h @ da") + 1
    path = write(tmp_path, "broken.py", text)
    assert main(["--step", path, "--gate-order", "ifog"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("lstm-ag-gradcheck: your code raised ValueError")
    assert err[0].endswith(f"(broken.py line {line})")


@pytest.mark.parametrize(("argv", "message"), [
    (["--step", "no/such/file.py"], "no/such/file.py: no such file"),
    (["--sequence", LOOP, "--backward", "backward_all"],
     "--sequence needs --backward NAME and --upstream last|all"),
    (["--sequence", LOOP, "--backward", "nope", "--upstream", "all"],
     "defines no function 'nope' (--backward)"),
])
def test_usage_errors_exit_2_with_one_line(capsys, argv, message):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0] and "Traceback" not in err[0]


def test_a_file_that_cannot_be_imported_exits_2(tmp_path, capsys):
    path = write(tmp_path, "bad.py", "def lstm_step_forward(:\n")
    assert main(["--step", path]) == 2
    assert "cannot be imported: SyntaxError at line 1" in capsys.readouterr().err


def test_a_bad_gate_order_exits_2():
    with pytest.raises(SystemExit) as exit_:
        main(["--step", STEP, "--gate-order", "iffo"])
    assert exit_.value.code == 2


def test_it_runs_as_a_module_with_its_exit_status(tmp_path):
    path = write(tmp_path, "my_lstm.py", mutated_source(
        "cs231n_step.py", "do = dnext_h * tanh_c * o * (1 - o)", "do = dnext_h * tanh_c"))
    done = subprocess.run([sys.executable, "-m", "lstm_ag.gradcheck", "--step", path,
                           "--gate-order", "ifog"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stderr
    assert done.stderr == ""
    assert "Your dz_o is missing the sigmoid's derivative" in done.stdout


def test_sys_exit_is_never_a_pass(tmp_path, capsys):
    source = (HERE / "cs231n_step.py").read_text()
    calls_exit = tmp_path / "exits.py"
    calls_exit.write_text(source + "\n\ndef lstm_step_backward(dnext_h, dnext_c, cache):\n"
                                   "    import sys\n    sys.exit(0)\n")
    assert main(["--step", str(calls_exit), "--gate-order", "ifog"]) == 1
    assert "called sys.exit(0) instead of returning" in capsys.readouterr().err
    at_import = tmp_path / "exits_on_import.py"
    at_import.write_text(source + "\nimport sys\nsys.exit(3)\n")
    assert main(["--step", str(at_import), "--gate-order", "ifog"]) == 2
    assert "calls sys.exit(3) when imported" in capsys.readouterr().err


def test_forgiving_spellings_of_the_file_and_the_gate_order(tmp_path, capsys):
    path = tmp_path / "my_lstm.py"
    path.write_text((HERE / "cs231n_step.py").read_text())
    assert main(["--step", str(path)[:-3], "--gate-order", "IFOG"]) == 0
    assert capsys.readouterr().out.rstrip().splitlines()[-1].startswith("OK:")


def test_the_python_call_prints_what_the_command_line_prints(capsys):
    """check_step's defaults are the command line's (N=2, D=3, H=8): the README's report."""
    assert main(["--step", STEP, "--gate-order", "ifog"]) == 0
    shown = capsys.readouterr().out.splitlines()[1:]          # after "checking ... N=2 D=3 H=8"
    student = load("cs231n_step.py")
    printed = str(lstm_ag.check_step(student.lstm_step_forward, student.lstm_step_backward,
                                     gate_order="ifog")).splitlines()

    def untimed(lines):
        return [re.sub(r" \(\d+\.\d\d s\)$", "", line) for line in lines]
    assert untimed(printed) == untimed(shown)


# ---------------------------------------------------------------- teachers: --grade

SUBMISSIONS = {
    "correct.py": "",
    "forgets_f.py": ("dprev_c = dc * f", "dprev_c = dc"),
    "no_sigmoid_derivative.py": ("do = dnext_h * tanh_c * o * (1 - o)", "do = dnext_h * tanh_c"),
    "raises.py": ("dWh = prev_h.T @ da", "dWh = prev_h @ da"),
    "hangs.py": "def lstm_step_backward(a, b, c):\n    while True:\n        pass\n",
    "greedy.py": "def lstm_step_backward(a, b, c):\n    return np.ones(1 << 34)\n",
    "exits.py": "def lstm_step_backward(a, b, c):\n    import os\n    os._exit(0)\n",
    "exits_on_import.py": "import os\nos._exit(0)\n",
    "chatty.py": "print('x' * 3_000_000)\n",
    "syntax_error.py": None,
}
OUTCOMES = {       # file -> (ok, first wrong row, start of the diagnosis or outcome)
    "correct.py": (True, None, "OK: worst vs autograd"),
    "forgets_f.py": (False, "dprev_c", "dprev_c is missing the forget gate"),
    "no_sigmoid_derivative.py": (False, "dx", "Your dz_o is missing the sigmoid's derivative"),
    "raises.py": (False, None, "your code raised ValueError"),
    "hangs.py": (False, None, "timed out after 2 s in lstm_step_backward"),
    "greedy.py": (False, None, "exhausted memory (limit 2048 MB) in lstm_step_backward"),
    "exits.py": (False, None, "exited with status 0 in lstm_step_backward before returning"),
    "exits_on_import.py": (False, None, "exited with status 0 while importing"),
    "chatty.py": (True, None, "OK: worst vs autograd"),
    "syntax_error.py": (False, None, ("SUBMISSIONS/syntax_error.py: cannot be imported: "
                                      "SyntaxError")),
}


def submissions(folder):
    folder.mkdir()
    source = (HERE / "cs231n_step.py").read_text()
    for name, change in SUBMISSIONS.items():
        if change is None:
            text = "def lstm_step_forward(:\n"
        elif isinstance(change, tuple):
            text = mutated_source("cs231n_step.py", *change)
        else:
            text = source + "\n" + change
        (folder / name).write_text(text)
    return folder


def test_grade_a_folder_of_mixed_submissions(tmp_path):
    folder = submissions(tmp_path / "SUBMISSIONS")
    done = subprocess.run(
        [sys.executable, "-m", "lstm_ag.gradcheck", "--grade", str(folder), "--gate-order",
         "ifog", "--timeout", "2", "--jobs", "2", "--csv", str(tmp_path / "grades.csv"),
         "--json", str(tmp_path / "grades.json")], capture_output=True, text=True, timeout=300)
    assert done.returncode == 1, done.stderr                  # not every submission agrees
    assert "Traceback" not in done.stderr
    rows = json.loads((tmp_path / "grades.json").read_text())
    assert [r["file"] for r in rows] == [str(folder / n) for n in sorted(SUBMISSIONS)]
    for row in rows:
        name = os.path.basename(row["file"])
        ok, first, phrase = OUTCOMES[name]
        assert (row["ok"], row["first_wrong_row"]) == (ok, first), row
        assert row["diagnosis"].startswith(phrase.replace("SUBMISSIONS", str(folder))), row
        # each file alone, in the style of its functions (found before any call)
        style = "not found" if name in ("exits_on_import.py", "syntax_error.py") else "cs231n"
        assert row["style"] == style and row["first_wrong_length"] is None, row
        assert row["exit_status"] == (0 if ok else 2 if "import" in phrase else 1), row
    with open(tmp_path / "grades.csv", newline="") as f:
        table = list(csv.DictReader(f))
    assert [r["file"] for r in table] == [r["file"] for r in rows]
    assert [r["ok"] for r in table] == [str(r["ok"]) for r in rows]
    assert all(r["diagnosis"] and r["style"] for r in table)          # every row filled
    screen = done.stdout.splitlines()
    assert screen[0].split() == ["file", "style", "ok", "first", "wrong", "row", "first",
                                 "wrong", "length", "diagnosis", "or", "outcome"]
    assert len(screen) == 2 + len(SUBMISSIONS) + 1 and screen[-1] == (
        "2 of 10 submissions agree")
    progress = [line for line in done.stderr.splitlines() if line.startswith("[")]
    assert len(progress) == len(SUBMISSIONS)
    assert any("hangs.py: NOT OK: timed out after 2 s" in line for line in progress)


def test_grade_usage_errors_exit_2(tmp_path, capsys):
    assert main(["--grade", str(tmp_path / "nowhere")]) == 2
    assert "nowhere: no such file or folder" in capsys.readouterr().err
    assert main(["--grade", str(tmp_path)]) == 2
    assert "no .py file in" in capsys.readouterr().err
    assert main(["--grade", str(tmp_path), "--step", STEP]) == 2


def test_grade_runs_each_file_with_the_options_a_single_check_takes(tmp_path):
    folder = tmp_path / "subs"
    folder.mkdir()
    (folder / "a.py").write_text((HERE / "sequence_loop.py").read_text())
    (folder / "b.py").write_text(mutated_source(
        "sequence_loop.py", "return np.array(hs), caches", "        return np.array(hs), caches"))
    done = subprocess.run(
        [sys.executable, "-m", "lstm_ag.gradcheck", "--grade", str(folder), "--backward",
         "backward_last", "--upstream", "last", "--steps", "3", "--hidden-size", "4",
         "--json", str(tmp_path / "g.json")], capture_output=True, text=True, timeout=300)
    assert done.returncode == 1, done.stderr
    a, b = json.loads((tmp_path / "g.json").read_text())
    assert a["ok"] and a["style"] == "sequence (last, dict)"
    assert not b["ok"] and b["first_wrong_length"] == 2
    assert b["diagnosis"].startswith("Your gradients are those of the first step alone")


def test_grade_stopped_by_sigterm_stops_every_check_and_writes_the_table(tmp_path):
    folder = tmp_path / "subs"
    folder.mkdir()
    source = (HERE / "cs231n_step.py").read_text()
    pid_file = tmp_path / "pid"
    (folder / "a.py").write_text(source)
    (folder / "b.py").write_text(source + "\ndef lstm_step_backward(a, b, c):\n    import os\n"
                                 f"    open({str(pid_file)!r}, 'w').write(str(os.getpid()))\n"
                                 "    while True:\n        pass\n")
    (folder / "c.py").write_text(source)
    proc = subprocess.Popen(
        [sys.executable, "-m", "lstm_ag.gradcheck", "--grade", str(folder), "--gate-order",
         "ifog", "--timeout", "60", "--json", str(tmp_path / "g.json")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    end = time.monotonic() + 120
    while not (pid_file.exists() and pid_file.read_text()):
        assert proc.poll() is None and time.monotonic() < end, proc.communicate()
        time.sleep(0.05)
    proc.terminate()
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert err.splitlines()[-1] == "lstm-ag-gradcheck: stopped (SIGTERM)"
    assert "Traceback" not in err
    rows = json.loads((tmp_path / "g.json").read_text())
    assert [r["ok"] for r in rows] == [True, False, False]
    assert [r["diagnosis"] for r in rows[1:]] == ["not checked: grading was interrupted"] * 2
    assert "not checked: grading was interrupted" in out
    assert gone(int(pid_file.read_text()))
