"""Data and embedded models: the embedded demo dataset (``demo``), ``embedded:`` model names and their
builders (``embedded``, ``tiny_model``, ``smollm2``), dataset loaders (``loaders``) and the split
interface every stage reads (``splits``).

May import: datasets, transformers, tokenizers, the config and the standard library. Never Ray,
stages, the pipeline or the CLI.
"""
