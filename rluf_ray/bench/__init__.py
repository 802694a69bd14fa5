"""Side-by-side benchmarks: ``rluf bench NAME`` runs ``rluf_ray.bench.NAME.main(argv)``; each prints
the baseline and ours side by side and a JSON object as its last line. Also here: the scale runs
(``generate_scale``, ``cluster_scale``), the loopback OpenAI-compatible endpoint the judge benchmark
uses (``loopback_endpoint``) and a real local multi-node Ray (``local_cluster``).

May import: any component, the pipeline and the stage registry (to time whole stages); never a stage
module directly.
"""
