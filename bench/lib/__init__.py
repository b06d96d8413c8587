"""What the benchmarks share, imported as `bench.lib` (each benchmark puts the repo root on
sys.path first, which also makes `tests.util` importable)."""
