"""Everything about judging: requests, prompt templates, reply schemas and parsing, cache keys, cost
and budget, retries, the offline judge, the OpenAI-compatible and Batch API clients, the cache, the
Ray actors, the providers and the one interface the stages call.

The interface is ``rluf_ray.judge.api``: ``judge(section, requests, ctx)`` -> results and a report,
``dry_run(...)`` -> a cost estimate, ``score_answers(...)``, and ``judge_plan(...)`` -> the
``JudgePlan`` a stage's plan holds (``result_settings(section, tasks)`` hashed: the provider's settings
and the versions of its own rules for the tasks the stage asks; the section operational).
A request is one of the task kinds ``requests.Task`` (``score``, ``pairwise``, ``rubric``).
``judge.provider`` names a provider in ``registry.PROVIDERS`` (``offline``, ``openai``, ``batch``; each
in its ``provider_<name>.py``); nothing outside this package looks at that name.

Layers (``tests/test_layers.py`` checks them):

* pure: ``cost``, ``keys``, ``offline``, ``offline_rubric``, ``parsing``, ``requests``, ``retry``,
  ``schemas``, ``scoring``. They import only the standard library, numpy, torch, rouge-score, other pure modules
  and ``rluf_ray.errors``, and touch no files.
* components: ``actors``, ``api``, ``batch``, ``cache``, ``cache_store``, ``client``, ``progress``,
  ``provider_*``, ``rate_limit``, ``registry``, ``service``, ``templates``, ``vllm_server``. They may
  also use Ray (``actors``, ``service``), openai, files and SQLite, the config, ``rluf_ray.store`` and
  ``rluf_ray.runtime``; never ``rluf_ray.stages``, the pipeline or the CLI.
"""
