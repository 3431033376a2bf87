"""The README's commands, run as a reader runs them: after a plain (non-editable)
``pip install .`` into a fresh virtual environment, in order, from an empty directory.

Each ```console block is one shell session: its ``$`` lines are run with bash, and the lines
shown after each are compared with what it printed. ``...`` stands for lines left out; the
timings are free; every other figure must agree to rounding (``docs/gallery.py``'s
``figures_agree``: one unit of the last digit shown), so a README figure that holds on one
BLAS kernel only fails here on the other. Tables trimmed to their wrong rows by the gallery are
trimmed the same way before comparing.
"""
import os
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
from test_docs import gallery

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
TIMINGS = [(re.compile(r"\d+(\.\d+)? steps/s"), "_ steps/s"),
           (re.compile(r" in \d+\.\d+ s\b"), " in _ s"),
           (re.compile(r"\(\d+\.\d+ s\)"), "(_ s)"),
           (re.compile(r"eta (\d+:)?\d+:\d\d|eta \?"), "eta _"),
           (re.compile(r"^(  \S.*\s)\d+\.\d\d$"), r"\1_")]     # a table's seconds column
MARK = "@@readme-status"


def console_blocks(text):
    """Each ```console block as [(command, [lines shown after it])]."""
    blocks = []
    for body in re.findall(r"```console\n(.*?)```", text, re.S):
        session = []
        for line in body.splitlines():
            if line.startswith("$ "):
                session.append((line[2:], []))
            elif session:
                session[-1][1].append(line)
        blocks.append(session)
    return blocks


def untimed(line):
    for pattern, placeholder in TIMINGS:
        line = pattern.sub(placeholder, line)
    return line


def mismatch(shown, printed):
    """Why ``printed`` (lines) is not what ``shown`` (lines, ``...`` for left-out lines) says,
    or None."""
    agree = gallery().figures_agree
    segments, current = [], []
    for line in shown:
        if line.strip() == "...":
            segments.append(current)
            current = []
        else:
            current.append(line)
    segments.append(current)
    at = 0
    for k, segment in enumerate(segments):
        if not segment:
            continue
        if k == len(segments) - 1 and len(segments) > 1:       # the last lines, after a ...
            at = max(at, len(printed) - len(segment))
        candidates = [at] if k == 0 else range(at, len(printed) - len(segment) + 1)
        for start in candidates:
            window = printed[start:start + len(segment)]
            if len(window) == len(segment) and not agree(
                    "\n".join(map(untimed, segment)), "\n".join(map(untimed, window))):
                at = start + len(segment)
                break
        else:
            window = printed[at:at + len(segment)]
            problems = agree("\n".join(map(untimed, segment)), "\n".join(map(untimed, window)))
            return f"shown {segment!r}\nprinted {printed!r}\n" + "; ".join(problems[:3])
    if len(segments) == 1 and at != len(printed):
        return f"printed more than shown: {printed[at:]!r}"
    return None


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """A fresh venv with lstm-ag installed from a copy of the source tree, not editable. Its
    dependencies come from the running environment (a path file), so nothing is downloaded
    but pip's build backend."""
    base = tmp_path_factory.mktemp("install")
    source = base / "source"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(
        ".git", "runs", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache",
        ".hypothesis", "benchmarks"))
    venv = base / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    python = venv / "bin" / "python"
    code = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    site = subprocess.run([str(python), "-c", code], capture_output=True, text=True,
                          check=True).stdout
    Path(site.strip(), "outer.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    # a plain install has no extras: the statistics peer of the series table stays out
    Path(site.strip(), "no_extras.pth").write_text(
        "import sys; sys.modules.update(statsforecast=None)\n")
    done = subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--no-deps",
                           str(source)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    code = "import lstm_ag, lstm_ag_train; print(lstm_ag.__file__, lstm_ag_train.__file__)"
    where = subprocess.run([str(python), "-c", code], capture_output=True, text=True, cwd=base,
                           check=True).stdout
    assert str(ROOT) not in where and "site-packages" in where, where   # not the clone
    return venv


def run_session(session, venv, cwd):
    """The commands of one console block in one bash process: [(status, [lines])]."""
    script = ["set +e"]
    for command, _ in session:
        script += [command, f"__status=$?; echo {MARK} $__status; (exit $__status)"]
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(PATH=f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}", PYTHONUNBUFFERED="1")
    done = subprocess.run(["bash", "-c", "\n".join(script)], cwd=cwd, env=env,
                          stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=900)
    results, lines = [], []
    for line in done.stdout.splitlines():
        if line.startswith(MARK):
            results.append((int(line.split()[1]), lines))
            lines = []
        else:
            lines.append(line)
    return results


def test_the_readme_runs_as_shown_after_a_plain_install(installed, tmp_path):
    blocks = console_blocks(README.read_text())
    assert len(blocks) >= 3, "the README's console blocks went missing"
    trim = gallery().trim_yes
    for session in blocks:
        results = run_session(session, installed, tmp_path)
        assert len(results) == len(session), (session, results)
        for n, ((command, shown), (status, printed)) in enumerate(
                zip(session, results, strict=True)):
            shows_status = n + 1 < len(session) and session[n + 1][0] == "echo $?"
            assert status == 0 or shows_status, (command, status, printed)
            if "lstm-ag-gradcheck" in command:
                printed = trim("\n".join(printed))[0].splitlines()
            problem = mismatch(shown, printed)
            assert problem is None, f"$ {command}\n{problem}"


def test_the_comparison_can_fail():
    """What the README test calls agreement: timings free, `...` skipping, figures to one
    unit of their last digit; anything else named."""
    shown = ["step 100  51.7 steps/s  val 6.685e-03", "...", "done in 21.74 s: 43.6x lower"]
    printed = ["step 100  9.1 steps/s  val 6.685e-03", "step 200", "done in 8.60 s: 43.6x lower"]
    assert mismatch(shown, printed) is None
    assert "43.6 became 118.2" in mismatch(shown, [*printed[:2], "done in 8.6 s: 118.2x lower"])
    assert "printed more" in mismatch(["a"], ["a", "b"])
    assert mismatch(["a", "...", "c"], ["b", "c"]) is not None


def documented_commands():
    """Every ``$ lstm-ag-...`` line of the README and docs/*.md: (page, argv)."""
    import shlex
    pages = [README, *sorted((ROOT / "docs").glob("*.md"))]
    found = []
    for page in pages:
        for line in re.findall(r"^\s*\$ (lstm-ag-\S+.*)$", page.read_text(), re.M):
            words = shlex.split(line.split(" #", 1)[0])
            if ">" in words:
                words = words[:words.index(">")]
            found.append((page.name, words))
    return found


def test_every_documented_command_is_one_the_command_lines_take():
    """The pages' commands parse with today's options (the long runs of docs/ are not run
    here; a renamed or removed option fails this test)."""
    from lstm_ag.gradcheck.__main__ import build_parser as gradcheck_parser
    from train.options import build_parser as train_parser
    from train.sweep import build_parser as sweep_parser
    commands = documented_commands()
    assert len(commands) >= 15, commands
    for page, (command, *args) in commands:
        if command == "lstm-ag-gradcheck":
            gradcheck_parser().parse_args(args)
        elif args[:1] == ["sweep"]:
            _, rest = sweep_parser().parse_known_args(args[1:])
            train_parser().parse_args(rest)
        else:
            assert command == "lstm-ag-train", (page, command)
            train_parser().parse_args(args)
