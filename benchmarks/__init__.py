"""Speed measurements against plain baselines: ``python -m benchmarks.run [--quick] [--out FILE]`` (or ``python benchmarks/run.py``)."""
