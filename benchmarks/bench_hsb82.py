"""Benchmark: hsb82 (hsb82). All contenders in one run, each in its own process.

Usage: python benchmarks/bench_hsb82.py [--quick] [--cases ...] [--contenders ...] [--cap S]
Writes benchmarks/results/hsb82.json and prints a Markdown table (see harness.py for columns).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import main  # noqa: E402

if __name__ == "__main__":
    main("hsb82".split(","), "hsb82", "bambi_pymc,bambi_nutpie,full,marginal,lme4".split(","))
