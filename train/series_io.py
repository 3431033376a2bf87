"""Reading a user's series: one numeric column of a ``.csv`` (with its dates, when it has a
date column), a ``.npy`` array or a ``.txt`` of one value per line.

* :func:`read_series` returns a :class:`Series`: the values ``(N,)`` with every missing value
  (an empty cell, ``NA``, ``nan``, ... in every layout, a blank line of a one-column file
  included) filled by linear interpolation and counted, the dates when the file has them, and
  the SHA-256 of the file (a checkpoint records it, so that ``--resume`` tells a changed file).
* :func:`parse_dates`: a date column (years ``1871``, year-months ``1949-01``, quarters
  ``1959Q1``, ISO dates ``2020-01-31`` and datetimes ``2020-01-31 12:30``) as ``numpy``
  datetimes with their step. Missing dates inside the series (a regular step with holes) are
  filled: each hole becomes missing values, interpolated and counted, and said; steps that are
  no multiple of the usual one (or dates out of order) are refused, naming the line.
"""
import csv
import errno
import hashlib
import math
import os
import re
from dataclasses import dataclass, field

import numpy as np

__all__ = ["SeriesError", "Series", "read_series", "fill_gaps", "parse_dates", "file_sha256",
           "MISSING", "DATE_COLUMNS"]

#: Cells read as a missing value (compared in lower case, after stripping blanks).
MISSING = ("", "na", "nan", "n/a", "null", "none", "-", "?")
#: Names of columns that hold dates or times (lower case): ignored when the series' column is
#: not named, like any non-numeric column.
DATE_COLUMNS = ("date", "time", "datetime", "timestamp", "year", "month", "week", "day",
                "period", "index", "ds")
_FORMATS = (".csv", ".npy", ".txt")
#: The largest cell a ``.csv`` may hold (the csv module's own default is 128 KiB).
_FIELD_LIMIT = 2**31 - 1
#: At most this fraction of the dates may be missing (holes of a regular step) to be filled.
MAX_DATE_HOLES = 0.2


class SeriesError(ValueError):
    """A series file cannot be used: the message names the file and what is wrong."""


@dataclass(frozen=True)
class Series:
    """What :func:`read_series` returns.

    - values: the series ``(N,)``, float64, gaps filled; missing: how many values were filled.
    - column: the column read (a ``.csv``), else ``""``; source: the file's name.
    - dates: ``(N,)`` ``numpy.datetime64`` (holes of the dates filled) or None; step: the
      dates' step as ``(count, unit)`` (``(1, "M")`` monthly, ``(7, "D")`` weekly, ...) or
      None; date_column: the column the dates came from; notes: what was done to the dates,
      in words (holes filled), for the screen.
    - sha256: the hex digest of the file's bytes.
    """
    values: np.ndarray
    missing: int
    column: str
    source: str
    dates: np.ndarray | None = None
    step: tuple | None = None
    date_column: str = ""
    notes: tuple = field(default_factory=tuple)
    sha256: str = ""


def file_sha256(path) -> str:
    """The SHA-256 of a file's bytes (hex), read in blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _float(cell):
    """A cell as a float: NaN for a missing value, None when it is not a number."""
    text = cell.strip()
    if text.lower() in MISSING:
        return math.nan
    try:
        return float(text)
    except ValueError:
        return None


def _rows(path):
    """The rows of a ``.csv`` (cells up to 2 GiB), trailing blank lines dropped."""
    previous = csv.field_size_limit(_FIELD_LIMIT)
    try:
        with open(path, newline="", encoding="utf-8-sig") as file:
            rows = list(csv.reader(file))
    finally:
        csv.field_size_limit(previous)
    while rows and not any(cell.strip() for cell in rows[-1]):
        rows.pop()
    return rows


def _check_header(name, header):
    """Refuse duplicated names, also when they differ only in blanks or case."""
    seen = {}
    for k, title in enumerate(header):
        key = title.strip().casefold()
        if key in seen:
            first = header[seen[key]]
            same = "" if first == title else f" ({first!r} and {title!r})"
            raise SeriesError(f"{name}: columns {seen[key] + 1} and {k + 1} are both named "
                              f"{title.strip()!r}{same}; rename one of them (which one is "
                              "the series would be a guess)")
        seen[key] = k


def _first_bad(col, cells, lines):
    """``(line, cell)`` of the first cell of a column that is not a number, or None."""
    if None not in col:
        return None
    row = col.index(None)
    return lines[row], cells[row].strip()


def _read_csv(path, column):
    """``(values, column, (date column, its cells) or None)`` of a ``.csv``."""
    name = os.path.basename(path)
    rows = _rows(path)
    while rows and not any(cell.strip() for cell in rows[0]):
        rows.pop(0)
    if not rows:
        raise SeriesError(f"{name}: the file is empty (a .csv needs a header line and values)")
    header = [cell.strip() for cell in rows[0]]
    body = rows[1:]
    if all(_float(cell) is not None and not math.isnan(_float(cell)) for cell in header):
        raise SeriesError(f"{name}: the first line {','.join(header)!r} holds numbers; a .csv "
                          "needs a header line naming its columns")
    _check_header(name, rows[0])
    if not body:
        raise SeriesError(f"{name}: no values below the header")
    for number, row in enumerate(body, start=2):
        if not row:                                   # a blank line: every cell missing
            body[number - 2] = row = [""] * len(header)
        if len(row) != len(header):
            raise SeriesError(f"{name}: line {number} has {len(row)} cells, the header "
                              f"{len(header)}")
    lines = list(range(2, 2 + len(body)))
    cells = {title: [row[k] for row in body] for k, title in enumerate(header)}
    dates = _date_column(header, cells, column)
    keep = [k for k, row in enumerate(body) if any(cell.strip() for cell in row)]
    if dates and len(keep) < len(body):   # the dates keep the time: a blank line is nothing
        lines = [lines[k] for k in keep]
        cells = {title: [col[k] for k in keep] for title, col in cells.items()}
        dates = dates[0], cells[dates[0]]
    parsed = {title: [_float(cell) for cell in col] for title, col in cells.items()}
    numeric = [title for title, col in parsed.items()
               if None not in col and not all(math.isnan(v) for v in col)]
    dates = dates and (*dates, lines)
    if column:
        if column not in cells:
            raise SeriesError(f"{name}: no column {column!r}; the columns are "
                              f"{', '.join(map(repr, header))}")
        if column not in numeric:
            bad = _first_bad(parsed[column], cells[column], lines)
            if bad:
                raise SeriesError(f"{name}: column {column!r} is not numeric: line {bad[0]} "
                                  f"holds {bad[1]!r}")
            raise SeriesError(f"{name}: column {column!r} holds no values (all missing)")
        return parsed[column], column, dates if dates and dates[0] != column else None
    candidates = [title for title in numeric if title.lower() not in DATE_COLUMNS
                  and not (dates and title == dates[0])]
    if len(candidates) == 1:
        return parsed[candidates[0]], candidates[0], dates
    if candidates:
        raise SeriesError(f"{name}: the numeric columns are {', '.join(map(repr, candidates))}"
                          "; name the series' column with --column NAME")
    # No numeric column: name the cells that keep the mostly numeric ones from being one.
    almost = [title for title, col in parsed.items() if title.lower() not in DATE_COLUMNS
              and not (dates and title == dates[0])
              and sum(v is not None and not math.isnan(v) for v in col) > 0]
    if almost:
        bad = {title: _first_bad(parsed[title], cells[title], lines) for title in almost[:3]}
        where = "; ".join(f"column {title!r}: line {line} holds {cell!r}"
                          for title, (line, cell) in bad.items())
        raise SeriesError(f"{name}: no numeric column besides dates: {where} (a number, or "
                          f"empty for a missing value, expected)")
    raise SeriesError(f"{name}: no numeric column besides dates; name the series' column "
                      "with --column NAME")


def _date_column(header, cells, column):
    """``(title, cells)`` of the column holding the dates, or None: the first whose name is a
    date's (:data:`DATE_COLUMNS`) and whose cells read as dates, else the first column whose
    cells all read as dates (never the series' own column)."""
    order = sorted(range(len(header)), key=lambda k: header[k].lower() not in DATE_COLUMNS)
    for k in order:
        title = header[k]
        if title == column:
            continue
        sample = [cell for cell in cells[title][:50] if cell.strip()]
        if sample and all(_date_kind(cell) for cell in sample) and (
                header[k].lower() in DATE_COLUMNS
                or not all(_float(cell) is not None for cell in sample)):
            return title, cells[title]
    return None


_YEAR = re.compile(r"^\s*(\d{3,4})\s*$")
_MONTH = re.compile(r"^\s*(\d{4})[-/](\d{1,2})\s*$")
_QUARTER = re.compile(r"^\s*(\d{4})[-\s]?[Qq]([1-4])\s*$")
_DATE = re.compile(r"^\s*\d{4}-\d{2}-\d{2}\s*$")
_DATETIME = re.compile(r"^\s*\d{4}-\d{2}-\d{2}[T ]\d{1,2}:\d{2}(:\d{2}(\.\d+)?)?\s*$")


def _date_kind(cell):
    """Which kind of date a cell is: ``"Y"``, ``"M"``, ``"Q"``, ``"D"``, ``"s"`` or None."""
    for kind, pattern in (("Y", _YEAR), ("M", _MONTH), ("Q", _QUARTER), ("D", _DATE),
                          ("s", _DATETIME)):
        if pattern.match(cell):
            return kind
    return None


def _to_datetime(cell, kind):
    text = cell.strip()
    if kind == "Y":
        return np.datetime64(f"{int(text):04d}", "Y")
    if kind == "M":
        year, month = _MONTH.match(text).groups()
        return np.datetime64(f"{year}-{int(month):02d}", "M")
    if kind == "Q":
        year, quarter = _QUARTER.match(text).groups()
        return np.datetime64(f"{year}-{3 * int(quarter) - 2:02d}", "M")
    return np.datetime64(text.replace(" ", "T"), "D" if kind == "D" else "s")


def parse_dates(cells, name: str = "dates", *, first_line: int = 2, lines=None):
    """Dates from text cells (module docstring).

    - cells: ``(N,)`` strings, all of one kind (years, year-months, quarters, dates or
      datetimes); name: the column (for messages); first_line: the file's line of cells[0]
      (lines: the file's line of each cell, when they are not consecutive).
    Returns ``(dates (N,) datetime64, step (count, unit))``: daily dates that all fall on one
    day of the month (or on its last day) are taken as monthly, months of one month of the
    year as yearly; the step is the most common difference. Raises :class:`SeriesError`
    naming the line of an empty or unreadable date, of mixed kinds, of dates out of order or
    repeated.
    """
    lines = list(range(first_line, first_line + len(cells))) if lines is None else lines
    kinds = set()
    for k, cell in enumerate(cells):
        kind = _date_kind(cell)
        if kind is None:
            raise SeriesError(f"column {name!r}: line {lines[k]} holds {cell.strip()!r}, "
                              "not a date (years 1871, months 1949-01, quarters 1959Q1, "
                              "dates 2020-01-31, datetimes 2020-01-31 12:30 are read)")
        kinds.add(kind)
    if len(kinds) > 1:
        raise SeriesError(f"column {name!r} mixes kinds of dates ({', '.join(sorted(kinds))})")
    kind = kinds.pop()
    try:
        dates = np.array([_to_datetime(cell, kind) for cell in cells])
    except ValueError as err:
        raise SeriesError(f"column {name!r}: not a valid date ({err})") from None
    dates = _coarsest(dates)
    steps = np.diff(dates).astype(np.int64)
    bad = np.flatnonzero(steps <= 0)
    if len(bad):
        k = int(bad[0])
        what = "repeats" if steps[k] == 0 else "comes before"
        raise SeriesError(f"column {name!r}: line {lines[k + 1]} ({cells[k + 1].strip()}) "
                          f"{what} the line before it ({cells[k].strip()}); the dates must "
                          "increase")
    unit = np.datetime_data(dates.dtype)[0]
    if not len(steps):
        return dates, (1, unit)
    values, counts = np.unique(steps, return_counts=True)
    step = (int(values[np.argmax(counts)]), unit)
    if step == (1, "D") and np.is_busday(dates).all() and (steps > 1).any():
        step = (1, "B")                    # weekdays only: business days (stock prices)
    return dates, step


def _coarsest(dates):
    """Daily dates on one day of each month as months; months of one month as years."""
    unit = np.datetime_data(dates.dtype)[0]
    if unit == "s" and (dates.astype("datetime64[D]") == dates).all():
        dates, unit = dates.astype("datetime64[D]"), "D"
    if unit == "D":
        months = dates.astype("datetime64[M]")
        day = (dates - months.astype("datetime64[D]")).astype(np.int64)
        month_end = (dates + 1).astype("datetime64[M]") != months
        if len(set(day.tolist())) == 1 or month_end.all():
            dates, unit = months, "M"
    if unit == "M" and len(dates) > 1:
        month = dates.astype(np.int64) % 12
        if len(set(month.tolist())) == 1:
            dates = dates.astype("datetime64[Y]")
    return dates


def _newest_first(cells):
    """Whether date cells of one kind strictly decrease (a file written newest first)."""
    kind = _date_kind(cells[0])
    if kind is None or any(_date_kind(cell) != kind for cell in cells):
        return False
    try:
        dates = np.array([_to_datetime(cell, kind) for cell in cells])
    except (ValueError, TypeError, AttributeError):
        return False
    return bool((np.diff(dates).astype(np.int64) < 0).all())


def _regular(values, dates, step, lines):
    """Holes of a regular step filled with missing values: ``(values, dates, holes)``."""
    count, unit = step
    offsets = np.busday_count(dates[0], dates) if unit == "B" else \
        (dates - dates[0]).astype(np.int64)
    off_step = offsets % count != 0
    if off_step.any():
        k = int(np.flatnonzero(off_step)[0])
        raise SeriesError(f"the dates are irregular: {dates[k]} (line {lines[k]}) is not a "
                          f"whole number of steps of {count} {_UNITS[unit]} after {dates[0]}; "
                          "give evenly spaced values (or drop the date column)")
    index = offsets // count
    n = int(index[-1]) + 1
    holes = n - len(values)
    if holes == 0:
        return values, dates, 0
    if holes > MAX_DATE_HOLES * n:
        raise SeriesError(f"the dates skip {holes} of {n} steps of {count} {_UNITS[unit]} "
                          f"(more than {MAX_DATE_HOLES:.0%}), too many to fill; give evenly "
                          "spaced values (or drop the date column: the values are then taken "
                          "as consecutive)")
    full = np.full(n, np.nan)
    full[index] = values
    all_dates = np.busday_offset(dates[0], np.arange(n)) if unit == "B" else \
        dates[0] + np.arange(n) * np.timedelta64(count, unit)
    return full, all_dates, holes


_UNITS = {"Y": "years", "M": "months", "D": "days", "B": "business days", "h": "hours",
          "m": "minutes", "s": "seconds"}


def describe_step(step) -> str:
    """A step ``(count, unit)`` in words: ``"monthly"``, ``"weekly"``, ``"30 minutes"``."""
    count, unit = step
    if unit == "s":
        for size, word in ((86400, "D"), (3600, "h"), (60, "m")):
            if count % size == 0:
                count, unit = count // size, word
                break
    names = {("Y", 1): "yearly", ("M", 1): "monthly", ("M", 3): "quarterly",
             ("D", 1): "daily", ("D", 7): "weekly", ("h", 1): "hourly",
             ("B", 1): "business-daily"}
    return names.get((unit, count), f"every {count} {_UNITS[unit]}")


def _read_txt(path):
    name = os.path.basename(path)
    values = []
    with open(path, encoding="utf-8-sig") as file:          # a byte-order mark is not a value
        for number, line in enumerate(file, start=1):
            text = line.split("#", 1)[0].strip()
            if not text:
                continue
            tokens = text.replace(",", " ").split()
            value = _float(tokens[0]) if len(tokens) == 1 else None
            if value is None:
                raise SeriesError(f"{name}: line {number} {text!r} is not one number (a .txt "
                                  "holds one value per line)")
            values.append(value)
    if not values:
        raise SeriesError(f"{name}: the file holds no values")
    return values


def _read_npy(path):
    name = os.path.basename(path)
    try:
        array = np.load(path, allow_pickle=False)
    except (ValueError, EOFError) as err:
        raise SeriesError(f"{name}: not a readable .npy array ({err})") from None
    if not isinstance(array, np.ndarray):
        raise SeriesError(f"{name}: holds several arrays (an .npz?); give one .npy array")
    if array.ndim == 2 and 1 in array.shape:
        array = array.reshape(-1)
    if array.ndim != 1:
        raise SeriesError(f"{name}: the array has shape {array.shape}; a series is 1-D (N,) "
                          "or (N, 1)")
    if not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)):
        raise SeriesError(f"{name}: the array's dtype is {array.dtype}; a series holds real "
                          "numbers")
    return array.astype(np.float64)


def fill_gaps(values) -> tuple[np.ndarray, int]:
    """Fill missing values (NaN) by linear interpolation in the index.

    - values: ``(N,)`` floats with NaN for missing values, at least one of them finite.
    Returns ``(filled (N,), count)``: a new float64 array (leading and trailing gaps take the
    nearest known value) and the number of values filled.
    """
    values = np.asarray(values, dtype=np.float64)
    missing = np.isnan(values)
    if missing.all():
        raise SeriesError("every value is missing")
    if not missing.any():
        return values.copy(), 0
    index = np.arange(len(values))
    filled = values.copy()
    filled[missing] = np.interp(index[missing], index[~missing], values[~missing])
    return filled, int(missing.sum())


def _check_file(path):
    """Refuse what is not a readable regular file, naming why (missing, a directory, a loop of
    symbolic links, no permission)."""
    try:
        info = os.stat(path)
    except OSError as err:
        if err.errno == errno.ELOOP:
            raise SeriesError(f"{path}: a loop of symbolic links (it never reaches a file)"
                              ) from None
        if err.errno == errno.EACCES:
            raise SeriesError(f"{path}: cannot be read (permission denied)") from None
        raise SeriesError(f"{path}: no such file" if err.errno == errno.ENOENT
                          else f"{path}: cannot be read ({err.strerror})") from None
    import stat
    if not stat.S_ISREG(info.st_mode):
        raise SeriesError(f"{path}: not a regular file")


def read_series(path: str | os.PathLike, column: str = "") -> Series:
    """Read one series from ``path``: a ``.csv``, ``.npy`` or ``.txt`` file.

    - path: the file. A ``.csv`` has a header line; its series is the column ``column``, or
      without one the only numeric column whose name is not a date's (:data:`DATE_COLUMNS`);
      a date column is read as the series' dates (:func:`parse_dates`), other columns are
      ignored. A ``.npy`` holds a 1-D array (or ``(N, 1)``); a ``.txt`` one value per line
      (``#`` starts a comment).
    - column: the ``.csv`` column to read (``""``: the only numeric one).
    Returns a :class:`Series`: values ``(N,)`` with the gaps filled (:func:`fill_gaps`) and
    their count. Raises :class:`SeriesError` (a ``ValueError``) naming the file and the
    problem: unknown format, no such file, unreadable, a loop of links, empty, no header,
    duplicated column names, a column that is missing or not numeric, several numeric
    columns without ``column``, irregular dates, infinite values, every value missing, too
    large for the memory.
    """
    path = os.fspath(path)
    name = os.path.basename(path)
    ext = os.path.splitext(path)[1].lower()
    if ext not in _FORMATS:
        raise SeriesError(f"{name}: unknown format {ext or '(no extension)'!r}; give a "
                          f"{', '.join(_FORMATS)} file")
    if column and ext != ".csv":
        raise SeriesError(f"{name}: --column is for .csv files (a {ext} holds one series)")
    _check_file(path)
    dates = None
    try:
        if ext == ".csv":
            values, column, dates = _read_csv(path, column)
        elif ext == ".txt":
            values = _read_txt(path)
        else:
            values = _read_npy(path)
        digest = file_sha256(path)
    except UnicodeDecodeError:
        raise SeriesError(f"{name}: not a text file (UTF-8)") from None
    except csv.Error as err:
        raise SeriesError(f"{name}: not a valid .csv ({err})") from None
    except PermissionError:
        raise SeriesError(f"{path}: cannot be read (permission denied)") from None
    except MemoryError:
        raise SeriesError(f"{name}: too large to read into memory "
                          f"({os.path.getsize(path) / 2**20:.0f} MiB)") from None
    except OSError as err:
        raise SeriesError(f"{path}: cannot be read ({err.strerror or err})") from None
    values = np.asarray(values, dtype=np.float64)
    if np.isinf(values).any():
        where = int(np.flatnonzero(np.isinf(values))[0])
        raise SeriesError(f"{name}: value {where} is infinite")
    stamps, step, notes, date_column = None, None, (), ""
    if dates is not None:
        date_column, cells, lines = dates
        try:
            try:
                stamps, step = parse_dates(cells, date_column, lines=lines)
            except SeriesError:
                if len(cells) < 2 or not _newest_first(cells):
                    raise
                values, cells, lines = values[::-1], cells[::-1], lines[::-1]
                stamps, step = parse_dates(cells, date_column, lines=lines)
                notes += ((f"the dates decrease (newest first): read in reverse, from "
                           f"{cells[0].strip()}"),)
            values, stamps, holes = _regular(values, stamps, step, lines)
        except SeriesError as err:
            raise SeriesError(f"{name}: {err}") from None
        if holes:
            notes += ((f"{holes} missing dates inside the series (the step is "
                       f"{describe_step(step)}): filled by interpolation, counted as missing"),)
    try:
        filled, missing = fill_gaps(values)
    except SeriesError as err:
        raise SeriesError(f"{name}: {err}") from None
    return Series(filled, missing, column if ext == ".csv" else "", name, stamps, step,
                  date_column, notes, digest)
