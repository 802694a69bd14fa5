"""Side-by-side benchmarks: ``rluf bench NAME`` imports ``rluf_ray.bench.NAME`` and calls ``main(argv)``."""
