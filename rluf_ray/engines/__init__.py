"""Sampling engines behind one interface, chosen by name, and the engine pool that runs them as Ray Data
actors.

Owns:

* ``base``: the sampling request (``SamplingSpec``, built from the config once for ``generate`` and
  ``infer``), ``Completion``, the ``Engine`` interface, ``EngineOptions`` / ``EngineEntry`` (what an
  engine module registers) and the model-folder check;
* ``registry``: engine name -> engine class, typed options class and the function building those
  options from the config's ``generation``, ``model`` and ``resources``; ``make_engine``, ``names``;
  an unknown name fails with the valid ones listed;
* ``hf``: transformers ``generate``, N samples per prompt in one call, shared prefill, log-probs;
* ``vllm``: vLLM ``LLM.generate`` with ``SamplingParams(n=N)``;
* ``pool``: the typed ``PoolPlan``, the ``map_batches`` arguments, the actor UDF that builds its engine
  inside the actor and closes it on teardown.

A new engine is one module here ending with ``ENGINE = EngineEntry(...)`` plus its line in
``registry.BUILTIN``.

May import: the standard library, ``rluf_ray.errors``, ``rluf_ray.config`` (types only, outside
``pool``), torch and transformers (inside ``hf``'s functions), ``vllm`` (only inside ``vllm.py``'s
functions, so the package imports without it), and in ``pool`` Ray, ``rluf_ray.data.splits``,
``rluf_ray.conformal.answers``, ``rluf_ray.schema``, ``rluf_ray.runtime.faults`` and
``rluf_ray.store.model_cache``. Ray only in ``pool``. Never ``rluf_ray.stages``, ``rluf_ray.pipeline``
or ``rluf_ray.cli``.
"""
