"""The embedded tiny causal LM (``embedded:tiny-llama``, see ``rluf_ray.data.embedded``), built locally.

A byte-level BPE tokenizer and a small Llama. No hub download: the tokenizer is trained on the run's
own text, the model is randomly initialised from a seed, and both are saved with ``save_pretrained``
so that transformers (and vLLM, since the head dimension is >= 64) load them like any hub checkpoint.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

SPECIAL_TOKENS = ("<|pad|>", "<|bos|>", "<|eos|>")


def build_tokenizer(texts: Iterable[str], vocab_size: int = 1024):  # -> PreTrainedTokenizerFast
    """Train a byte-level BPE tokenizer on ``texts`` (deterministic for the same texts).

    The special tokens are ``<|pad|>``, ``<|bos|>`` and ``<|eos|>``; every encoding starts with
    ``<|bos|>``, and padding is on the left (for batched generation).

    Args:
        texts: The training corpus, one string per document (consumed once).
        vocab_size: Target vocabulary size, special tokens and the 256 byte symbols included.

    Returns:
        A ``PreTrainedTokenizerFast`` wrapping the trained tokenizer.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    bos = tok.token_to_id("<|bos|>")
    tok.post_processor = processors.TemplateProcessing(
        single="<|bos|> $A", pair="<|bos|> $A $B", special_tokens=[("<|bos|>", bos)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<|bos|>",
        eos_token="<|eos|>",
        pad_token="<|pad|>",
        padding_side="left",
        clean_up_tokenization_spaces=False,
    )


def build_model(
    vocab_size: int,
    hidden_size: int = 128,
    layers: int = 2,
    heads: int = 2,
    max_positions: int = 1024,
    seed: int = 0,
    pad_token_id: int = 0,
    bos_token_id: int = 1,
    eos_token_id: int = 2,
):  # -> LlamaForCausalLM
    """A randomly initialised Llama with head_dim = hidden_size / heads (>= 64 for vLLM).

    It has tied input/output embeddings, an MLP of width ``4 * hidden_size`` and as many key/value heads
    as attention heads, in float32.

    Args:
        vocab_size: Vocabulary size (the tokenizer's ``len``).
        hidden_size: Model width.
        layers: Number of decoder layers.
        heads: Attention heads; ``hidden_size // heads`` must be >= 64.
        max_positions: Longest sequence in tokens (``max_position_embeddings``).
        seed: Torch seed of the random initialisation (set globally with ``torch.manual_seed``).
        pad_token_id: Id of the padding token.
        bos_token_id: Id of the beginning-of-sequence token.
        eos_token_id: Id of the end-of-sequence token.

    Returns:
        The untrained ``LlamaForCausalLM``.

    Raises:
        ValueError: ``hidden_size // heads < 64`` (vLLM could not load the model).
    """
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    if hidden_size // heads < 64:
        raise ValueError(f"head_dim {hidden_size // heads} < 64: vLLM cannot load this model")
    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        intermediate_size=4 * hidden_size,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        head_dim=hidden_size // heads,
        max_position_embeddings=max_positions,
        tie_word_embeddings=True,
        pad_token_id=pad_token_id,
        bos_token_id=bos_token_id,
        eos_token_id=eos_token_id,
        dtype="float32",
    )
    torch.manual_seed(seed)
    return LlamaForCausalLM(config)


def build_embedded(
    texts: Iterable[str],
    out_dir: str | Path,
    vocab_size: int = 1024,
    hidden_size: int = 128,
    layers: int = 2,
    heads: int = 2,
    max_positions: int = 1024,
    seed: int = 0,
) -> Path:
    """Build tokenizer and model and ``save_pretrained`` both into ``out_dir``.

    The model's vocabulary is the trained tokenizer's, and its generation config takes the tokenizer's
    pad/bos/eos ids.

    Args:
        texts: Corpus the tokenizer is trained on (the run's own texts).
        out_dir: Folder to save into (created when missing).
        vocab_size: Target vocabulary size of the tokenizer.
        hidden_size: Model width.
        layers: Number of decoder layers.
        heads: Attention heads (``hidden_size // heads`` must be >= 64).
        max_positions: Longest sequence in tokens.
        seed: Seed of the model's random initialisation.

    Returns:
        ``out_dir`` as a ``Path``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer(texts, vocab_size)
    model = build_model(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        layers=layers,
        heads=heads,
        max_positions=max_positions,
        seed=seed,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.bos_token_id = tokenizer.bos_token_id
    tokenizer.save_pretrained(out)
    model.save_pretrained(out)
    return out
