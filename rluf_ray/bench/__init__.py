"""Side-by-side benchmarks: ``rluf bench NAME`` runs ``rluf_ray.bench.NAME.main(argv)``."""
