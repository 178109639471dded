"""The command line as a new user meets it: help on every option, "did you mean" for misspelt instance,
scenario and solver names (checked before any work), and progress with elapsed time and the MIP gap on stderr,
also during ``--json`` (whose stdout stays one JSON document)."""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import pytest

from engine.cli import SolveLog, build_parser, did_you_mean, main


def test_every_option_of_every_command_has_help():
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    missing = [(name, a.dest) for name, p in sub.choices.items() for a in p._actions
               if not isinstance(a, argparse._HelpAction) and not a.help]
    assert missing == []


def test_did_you_mean():
    assert did_you_mean("eu_fbb", ["eu_fba", "tiny", "us_west_port"]) == "did you mean 'eu_fba'? "
    assert did_you_mean("xyz", ["eu_fba", "tiny"]) == ""


def test_misspelt_instance_names_the_closest_and_lists_the_bundled_ones(capsys):
    assert main(["validate", "eu_fbb"]) == 2
    err = capsys.readouterr().err
    assert ("eu_fbb:0:: not an instance folder (expected a directory with instance.yaml) nor a bundled instance; "
            "did you mean 'eu_fba'?") in err
    assert "bundled instances: eu_fba, tiny, us_west_port" in err
    assert main(["solve", "us_west_prt", "--no-baseline"]) == 2
    assert "did you mean 'us_west_port'?" in capsys.readouterr().err


def test_misspelt_preset_names_the_closest(capsys, tmp_path):
    assert main(["generate", "--preset", "us_west", "--out", str(tmp_path / "x")]) == 2
    assert "unknown preset 'us_west'; did you mean 'us_west_port'?" in capsys.readouterr().err


def test_misspelt_scenario_is_rejected_before_any_work(capsys, tmp_path):
    out = tmp_path / "run"
    assert main(["solve", "eu_fba", "--scenario", "consolidate_two_dc", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "did you mean 'consolidate_two_dcs'?" in err and "scenarios: baseline, black_friday" in err
    assert not out.exists()


def test_unknown_solver_is_rejected_by_the_parser(capsys, tmp_path):
    out = tmp_path / "run"
    assert main(["solve", "tiny", "--solver", "highz", "--out", str(out)]) == 2
    assert "unknown solver 'highz'; did you mean 'highs'?" in capsys.readouterr().err
    assert not out.exists()


def test_solve_log_reports_the_gap_of_highs_progress_lines(tmp_path):
    said: list[str] = []
    log = SolveLog(tmp_path / "solver.log", said.append, every=0.0)
    log("        Nodes      |    B&B Tree     |            Objective Bounds              |  Dynamic Constraints |"
        "       Work      \n")
    log(" T       0       0         0   0.00%   2490000         2532595.454474     1.68%        0      0      0"
        "      1385     0.9s\n")
    log("         1       0         1 100.00%   2532595.454474  2532595.454474     0.00%        0      0      0"
        "      1385     1.0s\n")
    assert said == ["solving: gap 1.68% (best 2,532,595, bound 2,490,000)",
                    "solving: gap 0.00% (best 2,532,595, bound 2,532,595)"]
    assert (tmp_path / "solver.log").read_text().count("\n") == 3


def test_json_solve_keeps_stdout_clean_and_reports_progress_on_stderr(capsys, tmp_path):
    code = main(["solve", "tiny", "--scenario", "consolidate", "--no-baseline", "--json", "--replications", "1",
                 "--out", str(tmp_path / "run"), "--store", str(tmp_path / "runs.duckdb"), "--time-limit", "20"])
    cap = capsys.readouterr()
    assert code == 0
    doc = json.loads(cap.out)
    assert doc["status"] == "optimal" and Path(doc["out"]) == tmp_path / "run"
    lines = cap.err.splitlines()
    assert lines and all(re.match(r"\[twinplan +\d+\.\ds\] ", line) for line in lines)
    assert any(re.search(r"round 1/\d+ +\d+\.\ds: ", line) for line in lines)  # one line per repair round
    elapsed = [float(re.match(r"\[twinplan +(\d+\.\d)s\]", line)[1]) for line in lines]
    assert elapsed == sorted(elapsed)


def test_solve_log_adds_the_callers_constant_and_recomputes_the_gap(tmp_path):
    """The solver saw the objective times 0.5 and without a constant of 1,000: best 2,000 and bound 1,800 in the
    log are 5,000 and 4,600 in the plan's units, gap (5,000 - 4,600) / 5,000 = 8.00 % (the log's 10.00 % is the
    solver's own, without the constant)."""
    from solvers.api import OFFSET_NOTE, SCALE_NOTE

    said: list[str] = []
    log = SolveLog(tmp_path / "solver.log", said.append, every=0.0)
    log(f"{SCALE_NOTE} 0.5 (twinplan scaled the model before the solver)\n{OFFSET_NOTE} 1000.0\n")
    log("         0       0         0   0.00%   1800            2000               10.00%        0      0      0"
        "        19     0.0s\n")
    log(" J       0       0         0   0.00%   -inf            2000               Large         0      0      0"
        "         0     0.0s\n")
    assert said == ["solving: gap 8.00% (best 5,000, bound 4,600)", "solving: gap Large (best 5,000, bound -inf)"]
    log(f"{SCALE_NOTE} 1.0\n")  # the next solve: no constant unless it is noted again
    log("         0       0         0   0.00%   1800            2000               10.00%        0      0      0"
        "        19     0.0s\n")
    assert said[-1] == "solving: gap 10.00% (best 2,000, bound 1,800)"


def test_progress_line_shows_the_plans_objective_on_a_real_solve(tmp_path):
    """tiny's consolidate scenario solved to optimality through the pipeline with the CLI's log: the last progress
    line's best and bound are the plan's objective and bound, closing costs included (DC_A and DC_B's 50,000
    each, charged once: a constant of 100,000 that the solver never sees), and the solver's own log line is that
    constant lower (in the solver's scaled units)."""
    from engine import load_instance
    from engine.pipeline import plan
    from engine.scenario import load_scenario
    from instances.instance import bundled_instance_path

    tiny = bundled_instance_path("tiny")
    said: list[str] = []
    log = SolveLog(tmp_path / "solver.log", said.append, every=0.0)
    result = plan(load_instance(tiny), load_scenario("consolidate", tiny), time_limit=30, mip_gap=0.0, log=log,
                  simulate=False)
    assert result.status == "optimal" and result.plan.bound == pytest.approx(result.objective, rel=1e-9)
    last = said[-1]
    assert last == f"solving: gap 0.00% (best {result.objective:,.0f}, bound {result.plan.bound:,.0f})", last
    from solvers.api import OFFSET_NOTE, SCALE_NOTE

    text = (tmp_path / "solver.log").read_text()
    scale = float(text[text.rindex(SCALE_NOTE) + len(SCALE_NOTE):].split()[0])
    assert f"{OFFSET_NOTE} 100000.0" in text[text.rindex(SCALE_NOTE):]
    raw = [line for line in text.splitlines() if re.search(r"(%|Large) .*\d+\.\d+s\s*$", line)][-1]
    assert float(raw.split()[-8]) / scale == pytest.approx(result.objective - 100_000.0, rel=1e-9), raw
