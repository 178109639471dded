"""Validation: every error class on a deliberately broken copy of ``tiny``, located as FILE:ROW:COLUMN.

ROW is the 1-based data row (header not counted), 0 for the file as a whole. Row numbers below follow the
bundled files: sites PORT_HAM, DC_A, DC_B, DC_C; zones Z_BER, Z_HAM, Z_MUC, Z_CGN, Z_FRA; resources six
stages of DC_A (rows 1-6), DC_B (7-12), DC_C (13-18); demand period 1 (rows 1-10) then period 2 (11-20).
Also: the ``twinplan validate`` exit codes and a hypothesis fuzz of the loader (garbage cells, garbage
files, empty files, wrong encodings, random YAML) that must only ever raise InstanceValidationError.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.cli import EXIT_BAD_INPUT, EXIT_OK, main
from instances.instance import bundled_instance_path, load_instance, validate_instance
from instances.schema import TABLES
from instances.validation import InstanceValidationError

TINY = bundled_instance_path("tiny")
TINY_FILES = sorted(p.name for p in TINY.iterdir() if p.is_file())


def edit(folder: Path, table: str, fn: Callable[[pd.DataFrame], pd.DataFrame]) -> None:
    """Rewrite ``<table>.csv`` of ``folder`` through ``fn`` (cells as text)."""
    f = folder / f"{table}.csv"
    df = pd.read_csv(f, dtype=str, keep_default_na=False)
    fn(df).to_csv(f, index=False)


def set_cell(table: str, row: int, column: str, value: str) -> Callable[[Path], None]:
    """A mutation writing ``value`` into data row ``row`` (1-based) of ``column``."""

    def apply(folder: Path) -> None:
        def fn(df: pd.DataFrame) -> pd.DataFrame:
            df.loc[row - 1, column] = value
            return df

        edit(folder, table, fn)

    return apply


def drop_rows(table: str, where: Callable[[pd.DataFrame], pd.Series]) -> Callable[[Path], None]:
    return lambda folder: edit(folder, table, lambda df: df[~where(df)])


def append_row(table: str, copy_of: int) -> Callable[[Path], None]:
    return lambda folder: edit(folder, table, lambda df: pd.concat([df, df.iloc[[copy_of - 1]]], ignore_index=True))


def errors_of(folder: Path) -> list[str]:
    """The located errors of a folder that must not load."""
    with pytest.raises(InstanceValidationError) as exc:
        load_instance(folder)
    errors = [str(f) for f in exc.value.report.errors]
    assert all(line in str(exc.value) for line in errors[:50]), "the exception message lists the errors"
    return errors


CASES: list[tuple[str, Callable[[Path], None], str]] = [
    ("missing file", lambda d: (d / "sites.csv").unlink(), "sites.csv:0:: missing file"),
    ("missing yaml", lambda d: (d / "instance.yaml").unlink(), "instance.yaml:0:: missing file"),
    ("missing column", lambda d: edit(d, "zones", lambda df: df.drop(columns=["lat"])),
     "zones.csv:0:lat: missing required column"),
    ("missing yaml key", lambda d: (d / "instance.yaml").write_text(
        "name: tiny\nhorizon: {start: 2026-11-16, periods: 2, period_days: 7}\n"),
     "instance.yaml: currency: missing required key"),
    ("wrong type", set_cell("resources", 3, "count", "ten"),
     "resources.csv:3:count: wrong type: 'ten' is not a number"),
    ("not an integer", set_cell("demand", 4, "period", "1.5"),
     "demand.csv:4:period: wrong type: 1.5 is not an integer"),
    ("NaN in required number", set_cell("demand", 2, "quantity", "NaN"),
     "demand.csv:2:quantity: missing value (NaN) in required field"),
    ("empty required number", set_cell("lanes", 7, "cost_per_unit", ""),
     "lanes.csv:7:cost_per_unit: missing value (NaN) in required field"),
    ("empty required text", set_cell("sites", 3, "name", ""), "sites.csv:3:name: missing value in required field"),
    ("negative capacity", set_cell("resources", 4, "count", "-3"),
     "resources.csv:4:count: negative or zero value: must be positive (got -3)"),
    ("zero rate", set_cell("resources", 1, "rate_per_hour", "0"),
     "resources.csv:1:rate_per_hour: negative or zero value: must be positive (got 0)"),
    ("zero lane capacity", set_cell("lanes", 2, "capacity", "0"),
     "lanes.csv:2:capacity: negative or zero value: must be positive (got 0)"),
    ("negative supply", set_cell("supply", 3, "capacity", "-1"),
     "supply.csv:3:capacity: must not be negative (got -1)"),
    ("duplicate id", append_row("sites", 2), "sites.csv:5:id: duplicate id (DC_A)"),
    ("duplicate key", append_row("resources", 4), "resources.csv:19:site_id+stage: duplicate key (DC_A, pack)"),
    ("latitude out of range", set_cell("zones", 1, "lat", "95"), "zones.csv:1:lat: out of range: 95 > 90"),
    ("longitude out of range", set_cell("sites", 2, "lon", "-200"), "sites.csv:2:lon: must be >= -180 (got -200)"),
    ("invalid choice", set_cell("sites", 2, "kind", "warehouse"),
     "sites.csv:2:kind: invalid value 'warehouse': expected one of ['dc', 'port', 'supplier', 'crossdock']"),
    ("lane from unknown site", set_cell("lanes", 1, "origin_id", "DC_X"), "lanes.csv:1:origin_id: unknown site 'DC_X'"),
    ("lane to unknown place", set_cell("lanes", 10, "destination_id", "Z_X"),
     "lanes.csv:10:destination_id: unknown site or zone 'Z_X'"),
    ("resource at unknown site", set_cell("resources", 7, "site_id", "DC_X"),
     "resources.csv:7:site_id: unknown site 'DC_X'"),
    ("demand for unknown product", set_cell("demand", 1, "product_id", "P_X"),
     "demand.csv:1:product_id: unknown product 'P_X'"),
    ("demand for unknown zone", set_cell("demand", 3, "zone_id", "Z_X"), "demand.csv:3:zone_id: unknown zone 'Z_X'"),
    ("unreachable zone", drop_rows("lanes", lambda df: df["destination_id"] == "Z_FRA"),
     "zones.csv:5:id: zone 'Z_FRA' cannot be reached: no lane from any DC"),
    ("no DC at all", lambda d: edit(d, "sites", lambda df: df.assign(kind=df["kind"].replace("dc", "supplier"))),
     "sites.csv:0:kind: no site of kind dc or crossdock: the network has no DC to plan "
     "(kinds present: ['port', 'supplier'])"),
    ("period after horizon", set_cell("demand", 20, "period", "3"),
     "demand.csv:20:period: period 3 outside the horizon 1..2"),
    ("period zero", set_cell("supply", 1, "period", "0"), "supply.csv:1:period: must be >= 1 (got 0)"),
    ("supply at a DC", set_cell("supply", 2, "site_id", "DC_A"),
     "supply.csv:2:site_id: site 'DC_A' is a DC: supply comes from ports or suppliers"),
    ("bad date in yaml", lambda d: (d / "instance.yaml").write_text(
        (d / "instance.yaml").read_text().replace("'2026-11-16'", "'2026-13-40'")),
     "instance.yaml: horizon.start: not a date (YYYY-MM-DD): '2026-13-40'"),
]


@pytest.mark.parametrize(("mutate", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_each_error_is_located(tiny_copy: Path, mutate: Callable[[Path], None], expected: str) -> None:
    mutate(tiny_copy)
    errors = errors_of(tiny_copy)
    assert any(e.startswith(expected) for e in errors), f"{expected!r} not in {errors}"


def test_many_bad_cells_are_all_reported(tiny_copy: Path) -> None:
    set_cell("demand", 2, "quantity", "x")(tiny_copy)
    set_cell("demand", 9, "quantity", "-5")(tiny_copy)
    set_cell("zones", 3, "lon", "181")(tiny_copy)
    errors = errors_of(tiny_copy)
    assert sorted(errors) == ["demand.csv:2:quantity: wrong type: 'x' is not a number",
                              "demand.csv:9:quantity: must not be negative (got -5)",
                              "zones.csv:3:lon: out of range: 181 > 180"]


def test_valid_tiny_has_no_findings() -> None:
    inst, report = validate_instance(TINY)
    assert inst is not None and report.findings == []


def test_warning_site_without_resources(tiny_copy: Path) -> None:
    drop_rows("resources", lambda df: df["site_id"] == "DC_C")(tiny_copy)
    inst, report = validate_instance(tiny_copy)
    assert inst is not None, "a warning does not stop loading"
    assert [str(w) for w in report.warnings] == ["sites.csv:4:id: site 'DC_C' has no resources: it cannot process flow"]


@pytest.mark.parametrize(("factor", "warned"), [(12, False), (13, True)])
def test_warning_demand_far_above_capacity(tiny_copy: Path, factor: int, warned: bool) -> None:
    # peak period 2: 8 800 x 1.5 x 1.1 = 14 520 units/week = 2 074.3 units/day; the smallest stage total is
    # putaway 6 x 60 x 16 x (1 + 0.8 + 1.2) = 17 280 units/day; the warning fires above 1.5 x 17 280 = 25 920.
    def scale(df: pd.DataFrame) -> pd.DataFrame:
        df["quantity"] = (df["quantity"].astype(float) * factor).astype(str)
        return df

    edit(tiny_copy, "demand", scale)
    inst, report = validate_instance(tiny_copy)
    assert inst is not None
    expected = (f"demand.csv:0:quantity: peak demand {14520 * factor / 7:,.0f} units/day is far above total "
                "putaway capacity 17,280 units/day")
    assert [str(w) for w in report.warnings] == ([expected] if warned else [])


def test_utf8_bom_is_accepted(tiny_copy: Path) -> None:
    f = tiny_copy / "sites.csv"
    f.write_bytes(b"\xef\xbb\xbf" + f.read_bytes())
    assert load_instance(tiny_copy).sites["id"].iloc[0] == "PORT_HAM"


@pytest.mark.parametrize("encoding", ["latin-1", "utf-16"])
def test_wrong_encoding_is_a_located_error(tiny_copy: Path, encoding: str) -> None:
    f = tiny_copy / "zones.csv"
    f.write_bytes(f.read_text(encoding="utf-8").replace("Cologne", "Köln").encode(encoding))
    errors = errors_of(tiny_copy)
    assert any(e.startswith("zones.csv:0:: not UTF-8 text") for e in errors), errors


# ------------------------------------------------------------------------------------------------------
# twinplan validate
# ------------------------------------------------------------------------------------------------------
def test_cli_validate_errors_exit_2(tiny_copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    set_cell("resources", 3, "count", "ten")(tiny_copy)
    set_cell("demand", 1, "product_id", "P_X")(tiny_copy)
    assert main(["validate", str(tiny_copy)]) == EXIT_BAD_INPUT
    out, err = capsys.readouterr()
    assert out == ""
    lines = err.splitlines()
    assert "error: resources.csv:3:count: wrong type: 'ten' is not a number" in lines
    assert "error: demand.csv:1:product_id: unknown product 'P_X'" in lines
    assert lines[-1] == "2 error(s), 0 warning(s)"


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    """``twinplan`` in its own process, as a user runs it."""
    return subprocess.run([sys.executable, "-m", "engine.cli", *args], capture_output=True, text=True, timeout=120)


def test_cli_validate_ok_exit_0() -> None:
    proc = run_cli("validate", str(TINY))
    assert proc.returncode == EXIT_OK and proc.stderr == ""
    assert proc.stdout.splitlines()[0] == "instance tiny (EUR)"
    assert "  total demand: 24,200 units" in proc.stdout.splitlines()
    proc = run_cli("validate", "tiny", "--json")
    assert proc.returncode == EXIT_OK
    summary = json.loads(proc.stdout)
    assert summary["zones"] == 5 and summary["lanes"] == 24 and summary["total_demand"] == 24200.0


def test_cli_entry_point_process(tiny_copy: Path) -> None:
    set_cell("zones", 2, "lat", "-91")(tiny_copy)
    proc = run_cli("validate", str(tiny_copy))
    assert proc.returncode == EXIT_BAD_INPUT
    assert "error: zones.csv:2:lat: must be >= -90 (got -91)" in proc.stderr.splitlines()
    assert "Traceback" not in proc.stderr


# ------------------------------------------------------------------------------------------------------
# fuzzing: only InstanceValidationError, never another exception
# ------------------------------------------------------------------------------------------------------
DEEP_FUZZ = int(os.environ.get("TWINPLAN_FUZZ_EXAMPLES", "0"))
"""Set TWINPLAN_FUZZ_EXAMPLES=500 for a long, randomized fuzz; by default 20 fixed examples per test."""
FUZZ = settings(max_examples=DEEP_FUZZ or 20, deadline=None, derandomize=not DEEP_FUZZ, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
CSV_TABLES = sorted(n for n in TABLES if (TINY / f"{n}.csv").is_file())


def load_or_validation_error(folder: Path) -> None:
    """Loading succeeds or raises InstanceValidationError with located findings; anything else fails."""
    try:
        load_instance(folder)
    except InstanceValidationError as exc:
        assert exc.report.errors
        for f in exc.report.errors:
            if f.row is None:  # a key of instance.yaml
                assert f.file == "instance.yaml" and f.column and str(f).startswith(f"{f.file}: {f.column}: ")
            else:
                assert f.file and f.row >= 0 and str(f).startswith(f"{f.file}:{f.row}:{f.column}: ")


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One copy of tiny for all examples of a fuzz test; :func:`altered` restores what an example changed."""
    dest = tmp_path_factory.mktemp("fuzz") / "tiny"
    shutil.copytree(TINY, dest)
    return dest


@contextmanager
def altered(folder: Path, name: str, data: bytes) -> Iterator[Path]:
    """``folder`` with file ``name`` replaced by ``data`` for the duration of the block."""
    f = folder / name
    original = (TINY / name).read_bytes()
    f.write_bytes(data)
    try:
        yield folder
    finally:
        f.write_bytes(original)


garbage_text = st.one_of(
    st.text(max_size=30),
    st.sampled_from(["", " ", "nan", "NaN", "inf", "-inf", "1e400", "-0", "1e308", "9" * 40, "0x1F", "1,5",
                     "None", "null", "TRUE", "2026-02-30", "\x00", "'", '"', "\n", ",,,", "DC_A", "Z_BER"]),
)


@FUZZ
@given(table=st.sampled_from(CSV_TABLES), row=st.integers(1, 6), column=st.integers(0, 12), value=garbage_text)
def test_fuzz_garbage_cell(scratch: Path, table: str, row: int, column: int, value: str) -> None:
    name = f"{table}.csv"
    rows = list(csv.reader(io.StringIO((TINY / name).read_text(encoding="utf-8"))))
    r = min(row, len(rows) - 1)
    rows[r][column % len(rows[r])] = value
    buf = io.StringIO()
    csv.writer(buf).writerows(rows)
    with altered(scratch, name, buf.getvalue().encode("utf-8")) as folder:
        load_or_validation_error(folder)


@pytest.mark.parametrize("name", TINY_FILES)
def test_empty_file_is_a_located_error(tiny_copy: Path, name: str) -> None:
    (tiny_copy / name).write_bytes(b"")
    expected = "instance.yaml:0:: must be a mapping" if name == "instance.yaml" else (
        f"{name}:0:: file is empty (expected a header row)")
    assert any(e.startswith(expected) for e in errors_of(tiny_copy))


@FUZZ
@given(name=st.sampled_from(TINY_FILES), data=st.binary(max_size=200))
def test_fuzz_garbage_bytes(scratch: Path, name: str, data: bytes) -> None:
    with altered(scratch, name, data) as folder:
        load_or_validation_error(folder)


@FUZZ
@given(name=st.sampled_from(TINY_FILES), line=st.integers(0, 8), text=st.text(max_size=60),
       encoding=st.sampled_from(["utf-8", "latin-1", "utf-16", "utf-16-le", "cp1252"]))
def test_fuzz_garbage_line_and_encoding(scratch: Path, name: str, line: int, text: str, encoding: str) -> None:
    lines = (TINY / name).read_text(encoding="utf-8").splitlines()
    lines[min(line, len(lines) - 1)] = text
    with altered(scratch, name, "\n".join(lines).encode(encoding, errors="replace")) as folder:
        load_or_validation_error(folder)


yaml_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10**6, 10**12) | st.floats(allow_nan=True) | st.text(max_size=12)
    | st.dates().map(str),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)
META_KEYS = ["name", "currency", "horizon", "periods", "rate_card", "defaults", "start", "period_days",
             "modes", "max_lanes_per_zone", "road_factor", "service_days"]


@FUZZ
@given(key=st.sampled_from(META_KEYS), sub=st.sampled_from([None, *META_KEYS]), value=yaml_values)
def test_fuzz_instance_yaml_values(scratch: Path, key: str, sub: str | None, value: object) -> None:
    meta = yaml.safe_load((TINY / "instance.yaml").read_text(encoding="utf-8"))
    if sub is None or not isinstance(meta.get(key), dict):
        meta[key] = value
    else:
        meta[key][sub] = value
    with altered(scratch, "instance.yaml", yaml.safe_dump(meta).encode("utf-8")) as folder:
        load_or_validation_error(folder)


def test_yaml_explicit_periods_and_huge_horizon_are_errors(tiny_copy: Path) -> None:
    f = tiny_copy / "instance.yaml"
    meta = yaml.safe_load(f.read_text())
    meta["horizon"]["periods"] = 10**9
    meta["periods"] = ["week one", {"period": 5, "days": -1}]
    f.write_text(yaml.safe_dump(meta))
    errors = errors_of(tiny_copy)
    assert "instance.yaml: horizon.periods: Input should be less than or equal to 100000, got 1000000000" in errors
    assert "instance.yaml: periods[0]: must be a mapping (keys: days, label, period), got 'week one'" in errors
    assert "instance.yaml: periods[1].period: must be 2 (periods are numbered 1, 2, ...), got 5" in errors
    assert "instance.yaml: periods[1].days: Input should be greater than 0, got -1" in errors
