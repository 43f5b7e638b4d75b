"""Speed measurements against plain baselines: ``python benchmarks/run.py [--quick] [--out FILE]``."""
