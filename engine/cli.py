"""The ``twinplan`` command line.

Exit codes: 0 ok, 1 unexpected internal error, 2 bad input (invalid instance, scenario or arguments),
3 infeasible, 4 no solution within the limit, 5 refused by the governance policy.

Each subcommand lives in one ``cmd_*`` function registered in :data:`COMMANDS` by :func:`build_parser`.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

EXIT_OK, EXIT_ERROR, EXIT_BAD_INPUT, EXIT_INFEASIBLE, EXIT_NO_SOLUTION, EXIT_FORBIDDEN = 0, 1, 2, 3, 4, 5


def _print_summary(summary: dict, out=sys.stdout) -> None:
    print(f"instance {summary['name']} ({summary['currency']})", file=out)
    kinds = ", ".join(f"{n} {k}" for k, n in summary["sites_by_kind_status"].items())
    print(f"  sites: {kinds}", file=out)
    print(f"  zones: {summary['zones']}  products: {summary['products']}  periods: {summary['periods']}"
          f"  lanes: {summary['lanes']}", file=out)
    print(f"  total demand: {summary['total_demand']:,.0f} units", file=out)
    caps = "  ".join(f"{st} {v:,.0f}" for st, v in summary["capacity_units_per_day"].items())
    print(f"  capacity (units/day): {caps}", file=out)


def cmd_validate(args: argparse.Namespace) -> int:
    """Validate an instance folder: errors (exit 2) or a summary (exit 0)."""
    from engine.instance import resolve_instance_path, validate_instance

    inst, report = validate_instance(resolve_instance_path(args.path))
    for f in report.errors:
        print(f"error: {f}", file=sys.stderr)
    for f in report.warnings:
        print(f"warning: {f}", file=sys.stderr)
    if inst is None:
        print(f"{len(report.errors)} error(s), {len(report.warnings)} warning(s)", file=sys.stderr)
        return EXIT_BAD_INPUT
    if args.json:
        print(json.dumps({**inst.summary(), "warnings": [str(f) for f in report.warnings]}))
    else:
        _print_summary(inst.summary())
    return EXIT_OK


def cmd_generate(args: argparse.Namespace) -> int:
    """Generate a preset or a synthetic instance into a folder."""
    from instances.generator import PRESETS, generate

    if args.preset is None and args.sites is None:
        print("error: give --preset NAME or --sites/--zones/--products/--periods", file=sys.stderr)
        return EXIT_BAD_INPUT
    if args.preset is not None and args.preset not in PRESETS:
        print(f"error: unknown preset {args.preset!r}; choose one of {sorted(PRESETS)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if args.preset is not None:
        inst = generate(args.preset, seed=args.seed)
    else:
        inst = generate("synthetic", seed=args.seed, sites=args.sites, zones=args.zones or 100,
                        products=args.products or 10, periods=args.periods or 4)
    inst.save(args.out, fmt=args.format)
    print(f"wrote {inst.name} to {args.out}")
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    """The main job on the bundled ``eu_fba`` instance."""
    from engine.instance import bundled_instance_path, load_instance

    inst = load_instance(bundled_instance_path("eu_fba"))
    _print_summary(inst.summary())
    return EXIT_OK


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="twinplan", description="Network-level digital twin of a DC network.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("validate", help="validate an instance folder")
    p.add_argument("path", help="instance folder or bundled instance name")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    COMMANDS["validate"] = cmd_validate

    p = sub.add_parser("generate", help="generate a bundled preset or a synthetic instance")
    p.add_argument("--preset", help="tiny | eu_fba | us_west_port")
    p.add_argument("--sites", type=int)
    p.add_argument("--zones", type=int)
    p.add_argument("--products", type=int)
    p.add_argument("--periods", type=int)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--format", choices=["csv", "parquet"], default="csv")
    p.add_argument("--out", required=True, help="output folder")
    COMMANDS["generate"] = cmd_generate

    p = sub.add_parser("demo", help="run the main job on the bundled eu_fba instance")
    COMMANDS["demo"] = cmd_demo
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # noqa: BLE001 - the last line of defence: a clear message, not a traceback
        from engine.validation import InstanceValidationError

        if isinstance(exc, InstanceValidationError | FileNotFoundError | ValueError):
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_BAD_INPUT
        raise


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())


__all__ = ["main", "build_parser", "Path"]
