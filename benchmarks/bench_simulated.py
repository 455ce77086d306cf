"""Benchmark: simulated (sim200k,sim1M,sim10M). All contenders in one run, each in its own process.

Usage: python benchmarks/bench_simulated.py [--quick] [--cases ...] [--contenders ...] [--cap S]
Writes benchmarks/results/simulated.json and prints a Markdown table (see harness.py for columns).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import main  # noqa: E402

if __name__ == "__main__":
    main("sim200k,sim1M,sim10M".split(","), "simulated", "bambi_pymc,bambi_nutpie,full,marginal,lme4".split(","))
