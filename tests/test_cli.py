import importlib
import json
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest
import tensorly as tl

from tensorly_gfdeflate import random_symmetric_cp
from tensorly_gfdeflate.cli import main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMALL = ["compare", "--dim", "6", "--rank", "3", "--order", "3", "--no-progress"]


def error_line(capsys):
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("gfdeflate: error: ")
    return lines[0]


def test_compare_prints_the_table_and_writes_json(capsys, tmp_path):
    path = tmp_path / "records.json"
    assert main(SMALL + ["--runs", "2", "--json", str(path)]) == 0
    out = capsys.readouterr().out
    assert "d=6, r=3, order 3" in out
    rows = [line for line in out.splitlines()
            if line.split() and line.split()[0] in ("gradient_flow", "power_deflation",
                                                    "tensorly_power")]
    assert len(rows) == 6
    saved = json.loads(path.read_text())
    assert "d=6" in saved["problem"]
    records = saved["records"]
    assert [(r["method"], r["run"]) for r in records][:3] == [
        ("gradient_flow", 0), ("power_deflation", 0), ("tensorly_power", 0)]
    for record in records:
        assert record["n_components"] == 3
        if record["method"] != "tensorly_power":
            assert record["recovered"] == 3 and record["relative_error"] < 1e-5


def test_compare_weights_and_width_reach_the_problem(capsys, tmp_path):
    path = tmp_path / "r.json"
    argv = ["compare", "--dim", "5", "--weights", "1,0.25", "--width", "2",
            "--methods", "gradient_flow", "--no-orthogonal", "--json", str(path)]
    assert main(argv) == 0
    assert "weights [1, 0.25]" in capsys.readouterr().out
    assert "random unit components" in json.loads(path.read_text())["problem"]


def test_compare_plot_writes_a_picture(capsys, tmp_path):
    pytest.importorskip("matplotlib")
    path = tmp_path / "deflation.png"
    assert main(SMALL + ["--methods", "gradient_flow,power_deflation", "--plot", str(path)]) == 0
    assert f"figure written to {path}" in capsys.readouterr().out
    assert path.stat().st_size > 20_000


def test_compare_a_tensor_file(capsys, tmp_path):
    truth = random_symmetric_cp(5, 2, 3, weights=[1.0, 0.4], random_state=0)
    path = tmp_path / "t.npy"
    np.save(path, tl.to_numpy(tl.cp_to_tensor(truth)))
    assert main(["compare", "--tensor", str(path), "--rank", "2", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert f"{path}: d=5, order 3" in out
    # Without a truth there is nothing to score recovery against: no such columns.
    assert "recovered" not in out and "order tau" not in out


@pytest.mark.parametrize("argv, fragment", [
    (["compare", "--bogus"], "unrecognized arguments: --bogus"),
    (["compare", "--dim", "ten"], "argument --dim"),
    (["compare", "--weights", "1,x"], "comma-separated numbers"),
    (["compare", "--methods", "svd"], "unknown method"),
    (["compare", "--runs", "0"], "--runs must be >= 1"),
    (["compare", "--dim", "3", "--rank", "5"], "--no-orthogonal"),
    (["compare", "--weights", "1,0.5", "--rank", "3"], "--weights has 2 values"),
    (["compare", "--noise", "-1"], "--noise"),
    (["compare", "--plot", "x.png", "--methods", "power_deflation"], "include gradient_flow"),
    (["compare", "--json", "/no/such/dir/r.json"], "does not exist"),
    (["compare", "--tensor", "missing.npy", "--rank", "2"], "not found: missing.npy"),
    (["compare", "--plot", "out.xyz"], "'.xyz' is not a format matplotlib writes; end the "
     "name with one of .eps"),
    (["compare", "--plot", "out"], "--plot out: no extension"),
    ([], "required: COMMAND"),
])
def test_errors_are_one_line_with_exit_status_2(capsys, monkeypatch, argv, fragment):
    if "--plot" in argv:
        pytest.importorskip("matplotlib")

    def no_compare(*args, **kwargs):
        raise AssertionError("the runs started before the bad flag was caught")

    monkeypatch.setattr(importlib.import_module("tensorly_gfdeflate.comparison"), "compare",
                        no_compare)
    assert main(argv) == 2
    assert fragment in error_line(capsys)


def test_tensor_file_errors(capsys, tmp_path):
    path = tmp_path / "t.npy"
    np.save(path, np.random.RandomState(0).standard_normal((4, 4, 4)))
    # A non-symmetric cubical array goes to the general methods (tests/test_general_api.py)
    # unless the symmetric ones are asked for.
    assert main(["compare", "--tensor", str(path), "--rank", "2", "--kind", "symmetric"]) == 2
    assert f"the tensor in {path} is not symmetric" in error_line(capsys)
    assert main(["compare", "--tensor", str(path), "--dim", "4", "--rank", "2"]) == 2
    assert "cannot be combined with --tensor" in error_line(capsys)
    assert main(["compare", "--tensor", str(path)]) == 2
    assert "--rank is required" in error_line(capsys)
    text = tmp_path / "t.txt"
    text.write_text("1 2\n3 4\n")
    assert main(["compare", "--tensor", str(text), "--rank", "2"]) == 2
    assert error_line(capsys) == (f"gfdeflate: error: {text} is not a .npy file (no numpy "
                                  "header); write the tensor with numpy: np.save('T.npy', array)")


def test_library_warnings_become_one_line(capsys, monkeypatch):
    from sklearn.exceptions import ConvergenceWarning

    compare_module = importlib.import_module("tensorly_gfdeflate.comparison")
    solve = compare_module.gradient_flow_cp

    def warning_solver(*args, **kwargs):
        warnings.warn("the flow reached its horizon", ConvergenceWarning, stacklevel=2)
        return solve(*args, **kwargs)

    # In place of a slow run that really reaches its horizon.
    monkeypatch.setattr(compare_module, "gradient_flow_cp", warning_solver)
    assert main(SMALL + ["--methods", "gradient_flow"]) == 0
    err = capsys.readouterr().err
    assert err == "gfdeflate: warning: the flow reached its horizon\n"


def test_progress_flag_draws_on_stderr(capsys):
    argv = ["compare", "--dim", "5", "--rank", "2", "--methods", "power_deflation",
            "--runs", "2"]
    assert main(argv + ["--progress"]) == 0
    captured = capsys.readouterr()
    assert "2/2" in captured.err and "power_deflation, run 1" in captured.err
    assert "\r" not in captured.out
    # By default only a terminal gets a bar; pytest's captured stderr is none.
    assert main(argv) == 0
    assert capsys.readouterr().err == ""


def test_json_dash_writes_the_records_to_stdout_and_the_rest_to_stderr(capsys, tmp_path):
    assert main(SMALL + ["--methods", "power_deflation", "--json", "-"]) == 0
    captured = capsys.readouterr()
    saved = json.loads(captured.out)
    assert [(r["method"], r["run"]) for r in saved["records"]] == [("power_deflation", 0)]
    assert "d=6, r=3, order 3" in captured.err and "power_deflation" in captured.err
    assert not (tmp_path / "-").exists() and not os.path.exists("-")


def test_help_numbers_runs_as_the_tables_do(capsys):
    with pytest.raises(SystemExit):
        main(["compare", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "figures of run 0" in help_text and "run 1" not in help_text
    # The default width is gradient_flow_cp's rule, stated there only.
    assert "(default: gradient_flow_cp's, which depends on the rank" in help_text


def test_subprocess_exit_status_and_streams():
    env = {**os.environ, "PYTHONPATH": ROOT}
    bad = subprocess.run([sys.executable, "-m", "tensorly_gfdeflate", "compare", "--rank", "x"],
                         capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)
    assert bad.returncode == 2
    assert bad.stdout == ""
    assert bad.stderr.count("\n") == 1 and "argument --rank" in bad.stderr


def test_a_closed_pipe_ends_quietly():
    # As "gfdeflate compare | head -1" once head has exited: the reader is gone
    # before anything is written.
    env = {**os.environ, "PYTHONPATH": ROOT}
    process = subprocess.Popen(
        [sys.executable, "-m", "tensorly_gfdeflate", "compare", "--dim", "5", "--rank", "2",
         "--methods", "power_deflation"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=ROOT)
    process.stdout.close()
    stderr = process.stderr.read()
    assert process.wait(timeout=120) == 1
    assert stderr == b""
