"""How a report shows itself: one line as repr, a table in Jupyter (_repr_html_).

The notebook test executes a real notebook in an IPython kernel (nbclient, nbformat, ipykernel:
the ``test`` extra) and reads the HTML the kernel sent for a cell ending in a report.
"""
import pathlib
import re

import numpy as np
import pytest
from students.mutate import load, mutate

import lstm_ag

TESTS = pathlib.Path(__file__).resolve().parent
BUG = ("cs231n_step.py", "dprev_c = dc * f", "dprev_c = dc")


def wrong_report():
    student = mutate(*BUG)
    return lstm_ag.check_step(student.lstm_step_forward, student.lstm_step_backward,
                              gate_order="ifog")


def test_repr_is_one_short_line_with_the_verdict_the_worst_block_and_the_first_length():
    report = wrong_report()
    rel = report.worst[2]
    assert repr(report) == f"<GradientReport step: MISMATCH, worst dprev_c rel {rel:.1e}>"
    student = load("sequence_loop.py")
    params = lstm_ag.init_params(3, 4, seed=0)
    xs = np.random.default_rng(0).standard_normal((5, 2, 3))
    ok = lstm_ag.check_gradients(params, xs, backward=student.backward_all, upstream="all")
    assert re.fullmatch(r"<GradientReport sequence T=5: OK, worst dW[xh]\[[ifgo]\] rel "
                        r"\d\.\de-\d\d>", repr(ok)), repr(ok)
    assert len(repr(ok)) < 100 and len(str(ok)) > 10 * len(repr(ok))
    early = mutate("sequence_loop.py", "return np.array(hs), caches",      # notebook 001's bug
                   "        return np.array(hs), caches")
    bad = lstm_ag.check_gradients(params, xs, backward=early.backward_last, upstream="last")
    assert bad.first_bad_length == 2
    assert re.fullmatch(r"<GradientReport sequence T=5: MISMATCH, worst dW[xh]\[[ifgo]\] rel "
                        r"\d\.\de[-+]\d\d, first wrong at length 2>", repr(bad)), repr(bad)


def test_html_marks_exactly_the_wrong_rows():
    report = wrong_report()
    page = report._repr_html_()
    assert page.count("<table>") == 2                     # the forward's and the gradients'
    assert page.count("class='wrong'") == sum(not r.ok for r in report.rows) == 1
    assert re.search(r"<tr class='wrong'[^>]*><td>dprev_c</td>", page)
    assert "<li>dprev_c is missing the forget gate" in page
    assert "lstm_ag&#x27;s step" in page                  # escaped
    assert page.rstrip().endswith(f"<p><b>{report.verdict()}</b></p></div>")


def test_a_notebook_cell_ending_in_a_report_shows_the_table(tmp_path):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    setup = (f"import sys; sys.path.insert(0, {str(TESTS)!r})\n"
             "from students.mutate import mutate\nimport lstm_ag\n"
             f"student = mutate{BUG!r}\n"
             "report = lstm_ag.check_step(student.lstm_step_forward, "
             "student.lstm_step_backward, gate_order='ifog')")
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(setup),
                                               nbformat.v4.new_code_cell("report")])
    nbclient.NotebookClient(notebook, timeout=120, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}}).execute()
    (out,) = notebook.cells[1].outputs
    assert out["output_type"] == "execute_result"
    page, plain = out["data"]["text/html"], out["data"]["text/plain"]
    ours = wrong_report()._repr_html_()
    timing = re.compile(r"\(\d+\.\d\d s\)")
    assert timing.sub("", page) == timing.sub("", ours)      # the same page, timing aside
    assert page.count("class='wrong'") == 1 and "<td>dprev_c</td>" in page
    assert page.count("<tr") == 2 + 2 + 15        # two header rows, next_h, next_c, 15 blocks
    assert plain.startswith("<GradientReport step: MISMATCH, worst dprev_c rel ")
    assert "\n" not in plain and len(plain) < 100
