"""What a user expects of both command lines: --version, no abbreviations, "did you mean",
``python -m lstm_ag``, the shipped series by its short name, no stale picture beside a new
forecast."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

import lstm_ag
from lstm_ag.gradcheck.__main__ import main as gradcheck
from train.__main__ import main as train

ROOT = Path(__file__).resolve().parent.parent


def _error(capsys, main, argv):
    with pytest.raises(SystemExit) as stop:
        main(argv)
    assert stop.value.code == 2
    return capsys.readouterr().err.splitlines()[-1]


@pytest.mark.parametrize("main, prog", [(train, "lstm-ag-train"),
                                        (gradcheck, "lstm-ag-gradcheck")])
def test_version(capsys, monkeypatch, main, prog):
    monkeypatch.setattr(sys, "argv", [prog])
    with pytest.raises(SystemExit) as stop:
        main(["--version"])
    assert stop.value.code == 0
    assert capsys.readouterr().out == f"{prog} {lstm_ag.__version__}\n"


@pytest.mark.parametrize("argv, said", [
    (["--stpes", "10"], "--stpes: no such option; did you mean --steps?"),
    (["--hiden", "8"], "--hiden: no such option; did you mean --hidden?"),
    (["--step", "10"], "--step: no such option; did you mean --steps?"),   # not a prefix of it
    (["--hidden=8", "--xyzzy"], "--xyzzy: no such option"),
])
def test_the_trainer_names_a_misspelled_option(capsys, argv, said):
    assert _error(capsys, train, argv).endswith(f"error: {said}")


def test_negative_values_are_values_not_options(capsys):
    assert train(["--lr", "-1"]) == 2
    assert capsys.readouterr().err.splitlines()[-1].endswith("--lr must be > 0, got -1.0")


def test_the_checker_names_a_misspelled_option(capsys):
    said = _error(capsys, gradcheck, ["--stpe", "my_lstm.py"])
    assert said.endswith("error: --stpe: no such option; did you mean --step?")


def test_help_shows_real_defaults_and_every_command(capsys):
    with pytest.raises(SystemExit):
        train(["--help"])
    out = capsys.readouterr().out
    assert "(default: )" not in out
    assert "{sine,counting,adding,series,forecast,sweep}" in out


def test_python_m_lstm_ag_is_the_checker(tmp_path):
    done = subprocess.run([sys.executable, "-m", "lstm_ag", "--version"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0 and done.stdout == f"lstm-ag-gradcheck {lstm_ag.__version__}\n"


def test_the_shipped_series_by_its_short_name_from_any_directory(tmp_path, monkeypatch):
    from train.datasets import resolve
    monkeypatch.chdir(tmp_path)
    path = resolve("sunspots")
    assert os.path.isfile(path) and path.endswith("sunspots.csv")
    (tmp_path / "sunspots").write_text("a file of the user's\n")
    assert resolve("sunspots") == "sunspots"                  # a path that exists wins
    assert resolve("nosuchseries") == "nosuchseries"


def test_a_misspelled_shipped_series_is_named(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert train(["series", "--data", "sunspot", "--quiet", "--out", str(tmp_path / "r")]) == 2
    assert capsys.readouterr().err.splitlines()[-1].endswith(
        "sunspot: no such file; did you mean sunspots, the series that ships with lstm-ag?")


def test_forecast_without_plot_removes_an_older_picture(tmp_path, capsys):
    out = tmp_path / "run"
    assert train(["series", "--data", "sunspots", "--steps", "4", "--eval-every", "2",
                  "--hidden", "4", "--quiet", "--out", str(out)]) == 0
    (out / "forecast.png").write_bytes(b"an older picture")
    capsys.readouterr()
    assert train(["forecast", "--out", str(out), "--horizon", "3"]) == 0
    assert not (out / "forecast.png").exists()
    assert "removed" in capsys.readouterr().out
