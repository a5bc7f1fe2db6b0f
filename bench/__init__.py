"""voxbus benchmarks (`make bench`). Benchmarks report figures; tests never assert timings."""
