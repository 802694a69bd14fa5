"""Side-by-side benchmarks: ``rluf bench NAME`` runs ``rluf_ray.bench.NAME.main(argv)``; each prints
the baseline and ours side by side and a JSON object as its last line. Also here: what they inject
or compare against (``stage_timing``: the generate stage's engines timed from inside; ``bare_generate``:
single-process baselines; ``latency_engine``: a simulated GPU engine for ``scale``), the loopback
OpenAI-compatible endpoint the judge benchmark uses (``loopback_endpoint``) and a real local
multi-node Ray (``local_cluster``).

May import: any component, the pipeline and the stage registry (to time whole stages); never a stage
module directly.
"""
