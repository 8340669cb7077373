"""Command line: ``python -m tensorly_gfdeflate`` / ``gfdeflate``."""

import argparse
import sys

__all__ = ["main", "build_parser"]


def build_parser():
    parser = argparse.ArgumentParser(
        prog="gfdeflate",
        description="Symmetric tensor decomposition: over-parametrized gradient flow "
        "beside tensor power deflation.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    demo = commands.add_parser(
        "demo", help="the paper's setting T = sum_{i<=5} a_i e_i^(x)4: both solvers side by side")
    demo.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    return parser


def main(argv=None):
    """Entry point; returns the exit code (2 for usage or input errors)."""
    args = build_parser().parse_args(argv)
    if args.command == "demo":
        from .demo import run_demo

        run_demo(random_state=args.seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
