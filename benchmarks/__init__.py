"""lengthrl benchmarks: each measures lengthrl against baselines in the same process, interleaved and repeated,
and writes ratios to benchmarks/results/<name>.json. Run all with `make bench` (python -m benchmarks)."""
