#!/bin/sh
# Build the documentation with warnings as errors; this also runs every
# examples/plot_*.py (sphinx-gallery) and fails if one of them fails.
# Usage: sh docs/build.sh   (from anywhere; output in docs/_build/html)
set -e
cd "$(dirname "$0")/.."
MPLBACKEND=Agg exec python -m sphinx -W --keep-going -b html docs docs/_build/html "$@"
