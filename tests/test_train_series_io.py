"""Reading a series the way it is in the file: dates, holes, duplicated names, empty cells in
every layout, large cells, files that cannot be read, and the messages that name each."""
import os

import numpy as np
import pytest
from numpy.testing import assert_array_equal

from train.cli import main
from train.series import SeriesError, load_task, parse_dates, read_series
from train.series_io import describe_step


def _csv(tmp_path, text, name="s.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize("header", ["value,value", "value, value", "Value,value "])
def test_duplicated_header_names_are_refused_by_name(tmp_path, header):
    path = _csv(tmp_path, f"date,{header}\n2020,1,2\n2021,3,4\n")
    for column in ("", "value"):
        with pytest.raises(SeriesError, match=r"s.csv: columns 2 and 3 are both named "
                                              r"'[vV]alue'.*rename one of them"):
            read_series(path, column)


@pytest.mark.parametrize("text, values, missing", [
    ("x\n1\n\n3\n", [1, 2, 3], 1),                         # a blank line: a missing value
    ("x\n1\n \n\n4\n\n\n", [1, 2, 3, 4], 2),               # trailing blank lines: the end
    ("\n\nx\n1\n2\n", [1, 2], 0),                          # blank lines before the header
    ("t,x\n2020-01,1\n2020-02,\n2020-03,3\n", [1, 2, 3], 1),
    ("t,x\n2020-01,1\n2020-02,2\n\n2020-04,4\n2020-05,5\n2020-06,6\n", [1, 2, 3, 4, 5, 6],
     1),                                                # dated: the blank line, a hole in time
])
def test_empty_cells_are_filled_in_every_layout_not_dropped(tmp_path, text, values, missing):
    series = read_series(_csv(tmp_path, text))
    assert_array_equal(series.values, values)
    assert series.missing == missing


def test_a_byte_order_mark_is_not_part_of_the_first_value(tmp_path):
    (tmp_path / "b.txt").write_text("\ufeff1.5\n2\n", encoding="utf-8")
    assert_array_equal(read_series(tmp_path / "b.txt").values, [1.5, 2])


def test_a_large_cell_is_read(tmp_path):
    note = "x" * (1 << 20)
    path = _csv(tmp_path, "value,note\n" + "".join(f"{k},{note if k == 1 else ''}\n"
                                                   for k in range(5)))
    series = read_series(path, "value")
    assert_array_equal(series.values, np.arange(5.0))


def test_a_bad_cell_is_named_with_and_without_column(tmp_path):
    path = _csv(tmp_path, "date,x\n2020-01-01,1\n2020-01-02,2\n2020-01-03,foo\n")
    with pytest.raises(SeriesError, match=r"column 'x' is not numeric: line 4 holds 'foo'"):
        read_series(path, "x")
    with pytest.raises(SeriesError, match=r"s.csv: no numeric column besides dates: column "
                                          r"'x': line 4 holds 'foo'"):
        read_series(path)


def test_a_loop_of_links_and_an_unreadable_file_are_named(tmp_path, monkeypatch, capsys):
    os.symlink(tmp_path / "b.csv", tmp_path / "a.csv")
    os.symlink(tmp_path / "a.csv", tmp_path / "b.csv")
    with pytest.raises(SeriesError, match=r"a.csv: a loop of symbolic links"):
        read_series(tmp_path / "a.csv")
    path = _csv(tmp_path, "x\n" + "\n".join(map(str, range(100))) + "\n", "locked.csv")
    real_open = open

    def refuse(file, *args, **kwargs):                # as chmod 000 does for a non-root user
        if os.fspath(file) == os.fspath(path):
            raise PermissionError(13, "Permission denied", os.fspath(file))
        return real_open(file, *args, **kwargs)
    monkeypatch.setattr("builtins.open", refuse)
    with pytest.raises(SeriesError, match=r"locked.csv: cannot be read \(permission denied\)"):
        read_series(path)
    code = main(["series", "--data", str(path), "--out", str(tmp_path / "run"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and "locked.csv: cannot be read (permission denied)" in err
    assert "cannot write" not in err


def test_out_of_memory_names_the_series_length(tmp_path, monkeypatch):
    path = _csv(tmp_path, "x\n" + "\n".join(map(str, range(200))) + "\n")
    monkeypatch.setattr("train.rundir.available_memory", lambda: 100_000)
    with pytest.raises(SeriesError, match=r"s.csv: 200 values: out of memory building the "
                                          r"windows of 30 steps \(about 0.000112 GiB, 9.31e-05 "
                                          r"GiB available\); train it whole with --tbptt K"):
        load_task(path, 30)
    monkeypatch.setattr("train.rundir.available_memory", lambda: None)

    def no_memory(*args, **kwargs):
        raise MemoryError
    monkeypatch.setattr("train.split.windows", no_memory)
    with pytest.raises(SeriesError, match=r"s.csv: 200 values: out of memory building the "
                                          r"windows of 30 steps.*--tbptt"):
        load_task(path, 30)


@pytest.mark.parametrize("cells, first, step", [
    (["1871", "1872", "1873"], "1871", (1, "Y")),
    (["1949-01", "1949-02", "1949-03"], "1949-01", (1, "M")),
    (["1959Q1", "1959Q2", "1959-Q3"], "1959-01", (3, "M")),
    (["1949-01-01", "1949-02-01", "1949-03-01"], "1949-01", (1, "M")),      # one day a month
    (["1950-01-31", "1950-02-28", "1950-03-31"], "1950-01", (1, "M")),      # month ends
    (["1958-03-29", "1958-04-05", "1958-04-12"], "1958-03-29", (7, "D")),
    (["2020-01-01 00:00", "2020-01-01 00:30", "2020-01-01T01:00:00"],
     "2020-01-01T00:00:00", (1800, "s")),
    (["2021-01-01", "2021-01-04", "2021-01-05"], "2021-01-01", (1, "B")),   # weekdays only
])
def test_dates_of_every_kind(cells, first, step):
    dates, found = parse_dates(cells)
    assert str(dates[0]) == first and found == step


def test_describe_steps():
    assert [describe_step(s) for s in [(1, "Y"), (1, "M"), (3, "M"), (7, "D"), (1800, "s"),
                                       (3600, "s"), (1, "B")]] == \
        ["yearly", "monthly", "quarterly", "weekly", "every 30 minutes", "hourly",
         "business-daily"]


def test_holes_in_the_dates_are_filled_and_said(tmp_path):
    path = _csv(tmp_path, "month,x\n2020-01,1\n2020-02,2\n2020-04,4\n2020-05,5\n2020-06,6\n")
    series = read_series(path)
    assert_array_equal(series.values, [1, 2, 3, 4, 5, 6]) and series.missing == 1
    assert str(series.dates[2]) == "2020-03" and series.step == (1, "M")
    assert series.notes == (("1 missing dates inside the series (the step is monthly): filled "
                             "by interpolation, counted as missing"),)


def test_dates_newest_first_are_read_in_reverse(tmp_path):
    series = read_series(_csv(tmp_path, "date,x\n2020-03,3\n2020-02,2\n2020-01,1\n"))
    assert_array_equal(series.values, [1, 2, 3]) and str(series.dates[0]) == "2020-01"
    assert series.notes == ("the dates decrease (newest first): read in reverse, from 2020-01",)


@pytest.mark.parametrize("text, match", [
    ("date,x\n2020-01-01,1\n2020-01-08,2\n2020-01-15,3\n2020-01-18,4\n2020-01-22,5\n",
     (r"the dates are irregular: 2020-01-18 \(line 5\) is not a whole number of steps of 7 "
      r"days after 2020-01-01")),
    ("date,x\n2020-01,1\n2020-03,2\n2020-02,3\n", (r"column 'date': line 4 \(2020-02\) "
                                                    r"comes before the line before it")),
    ("date,x\n2020,1\n2020,2\n", r"column 'date': line 3 \(2020\) repeats the line before"),
    ("date,x\n2020,1\n2030,2\n2031,3\n", r"the dates skip 9 of 12 steps of 1 years"),
    ("date,x\n2020-01,1\n2020,2\n", r"column 'date' mixes kinds of dates"),
    ("date,x\n2020-01-01,1\n,2\n", r"column 'date': line 3 holds '', not a date"),
])
def test_irregular_dates_are_refused_naming_the_line(tmp_path, text, match):
    with pytest.raises(SeriesError, match=r"s.csv: " + match):
        read_series(_csv(tmp_path, text))


def test_the_file_hash_is_recorded_and_a_changed_file_said_on_resume(tmp_path, capsys):
    values = np.sin(np.arange(120) / 3) + 0.01 * np.arange(120)
    path = _csv(tmp_path, "x\n" + "\n".join(f"{v:.6f}" for v in values) + "\n")
    out = tmp_path / "run"
    small = ["--hidden", "4", "--window", "8", "--batch", "8", "--eval-every", "5",
             "--horizon", "2", "--quiet"]
    assert main(["series", "--data", str(path), "--steps", "5", *small, "--out", str(out)]) == 0
    assert main(["series", "--data", str(path), "--steps", "10", "--out", str(out),
                 "--resume", "--quiet"]) == 0
    assert "changed" not in capsys.readouterr().err
    path.write_text(path.read_text() + "9.5\n")
    assert main(["series", "--data", str(path), "--steps", "15", "--out", str(out),
                 "--resume", "--quiet"]) == 0
    err = capsys.readouterr().err
    assert f"--resume: note: {path} has changed since the run started" in err
    assert "goes on with the 120 values its checkpoint stored" in err
