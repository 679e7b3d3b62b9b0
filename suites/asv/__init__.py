"""asv benchmarks of adjointbench, generated from the catalogue (see bench_primitives)."""
