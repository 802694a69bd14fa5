"""The offline judge's rubric: four separate, deterministic measures of an answer against the reference
and the post, each in [0, 1] (the judge scales them to 0-10 on the version's grid).

Text is read the same way for every axis (:func:`content_tokens`): words are runs of Unicode letters
and digits; stop words and one-letter words are dropped; the rest are *content tokens*, compared by a
light stem (:func:`stem`: lower case, a plural ``s``/``es``, ``ed`` and ``ing`` and a final ``e``
stripped, a doubled last consonant undone), so "opened"/"opening" and "visitor"/"visitors" match.
A *fact* is a content token of the reference. *Key facts* are the ones a summary can get wrong:
numbers (a token of digits) and names (a capitalised word inside a sentence, or opening one before
another capitalised word or where the texts capitalise it inside a sentence too, so "Critics argue" is
no name); when the reference has neither, every fact is a key fact. The four axes:

- **accuracy** (:func:`accuracy`): the reference's key facts the answer states, against the key facts
  it gets wrong, a wrong one counting :data:`CONTRADICTION_WEIGHT` times: ``correct / (correct + 2 *
  wrong)`` (0 when it states none). A wrong fact is a number or name of the answer's that the
  reference lacks, either standing in for one of the reference's that the answer lacks (the same kind:
  "45 people" for "40 people", "Friday" for "Monday"), or found in neither the reference nor the post
  (invented). A vague phrase ("a crowd came") is no contradiction: it costs completeness instead; an
  extra name the post does mention is no mistake either.
- **completeness** (:func:`completeness`): the share of the reference's distinct facts the answer
  contains.
- **relevance** (:func:`relevance`): the share of the answer's content tokens that are grounded in the
  post or the reference (the reference counts because a summary may borrow its wording: "people came"
  for "residents took part"); padding about something else lowers it.
- **expression** (:func:`expression`): fluency times a length factor. Fluency is
  ``(1 - repeated) * max(0, 1 - NONWORD_COST * non-words)``, times :data:`TRUNCATION_FACTOR` for an
  unfinished ending: ``repeated`` is the share of the answer's word bigrams that repeat an earlier one,
  ``non-words`` the share of its words that are not word-like (:func:`is_wordlike`) and do not occur in
  the post or the reference, and the ending is unfinished when the reference ends a sentence (``.``,
  ``!``, ``?``) and the answer does not. The length factor is 1 while the answer has
  :data:`LENGTH_BAND` (half to twice) the reference's words and falls in proportion outside.

Why hand-written rules: the measures need a word's form (capitals, digits) and its sentence end, which
ROUGE's tokenizer discards, and a stemmer only has to match inflections of the same word on both
sides; a few lines do that without a dependency beyond the standard library. Everything here is a
pure function of the three texts: no randomness, no state.
"""

from __future__ import annotations

import functools
import re
from collections import Counter
from dataclasses import dataclass
from typing import Literal

RULE_VERSION = "rubric_facts_1"
"""This rule's identity (the offline provider's ``rule_versions["rubric"]``): change it with the rule, so
evaluations judged by an older one are not reused (the first rule, ROUGE-L and a length ratio, had none)."""
CONTRADICTION_WEIGHT = 2.0
"""How many correct facts one wrong fact outweighs under accuracy (it drops the true value and asserts
a false one)."""
TRUNCATION_FACTOR = 0.7
"""The fluency factor of an answer that stops without finishing its sentence."""
NONWORD_COST = 2.0
"""What the share of non-words costs fluency, per unit (a fifth of the words garbled: 0.6)."""
LENGTH_BAND = (0.5, 2.0)
"""The answer's length in words, as a share of the reference's, that expression does not penalise."""

Kind = Literal["number", "name", "word"]

STOPWORDS = frozenset(
    """a about above after again against all also am an and any are as at be because been before being
    below between both but by can could did do does doing down during each few for from further had has
    have having he her here hers herself him himself his how i if in into is it its itself just me more
    most my myself no nor not now of off on once only or other our ours out over own same she should so
    some such than that the their theirs them then there these they this those through to too under
    until up very was we were what when where which while who whom why will with would you your yours
    yourself""".split()
)
"""Function words, never facts (a small English list; other languages keep all their words)."""

_WORD = re.compile(r"[^\W_]+")
_SENTENCE_END = re.compile(r"[.!?][\"'”’)\]]*\s*$")
_EDGE = "\"'“”‘’()[]{}.,;:!?-–—*…"
_VOWELS = frozenset("aeiouyàáâãäåæèéêëìíîïòóôõöøùúûüýÿœ")
_REPEATED_CHAR = re.compile(r"(.)\1\1")


@dataclass(frozen=True)
class Token:
    """One content token: its stem (what is compared) and its kind (numbers and names are key facts)."""

    stem: str
    kind: Kind


@functools.lru_cache(maxsize=65536)
def stem(word: str) -> str:
    """The light stem a content token is compared by.

    Args:
        word: One word (letters and digits).

    Returns:
        ``word`` in lower case with ``ing``, ``ed``, a plural ``es``/``s`` and then a final ``e``
        stripped and a doubled last consonant undone, as long as three characters remain; a number as
        it is.
    """
    w = word.lower()
    if w.isdigit():
        return w
    for suffix in ("ing", "ed", "es", "s"):
        if not w.endswith(suffix) or len(w) - len(suffix) < 3 or (suffix == "s" and w.endswith("ss")):
            continue
        if suffix == "es" and not w[:-2].endswith(("s", "x", "z", "ch", "sh")):
            continue  # "races": strip the "s" only, so it meets "race"
        w = w[: -len(suffix)]
        if suffix in ("ing", "ed") and len(w) > 3 and w[-1] == w[-2] and w[-1] not in "lsz":
            w = w[:-1]  # "planned" -> "plan"
        break
    if len(w) > 3 and w.endswith("e"):
        w = w[:-1]
    return w


def _words(text: str) -> list[tuple[str, bool]]:
    """Each word of ``text`` with whether it opens a sentence (the text's start, or after ``.!?`` or a
    line break)."""
    out, end = [], -1
    for m in _WORD.finditer(text):
        gap = text[max(end, 0) : m.start()]
        out.append((m.group(0), end < 0 or any(c in ".!?\n" for c in gap)))
        end = m.end()
    return out


def _capitalised(word: str) -> bool:
    return word.isalpha() and word[0].isupper() and word.lower() not in STOPWORDS


def name_stems(text: str) -> set[str]:
    """The stems of the words ``text`` capitalises inside a sentence (its names, surely).

    Args:
        text: Any text.

    Returns:
        The stems of capitalised words that do not open a sentence.
    """
    return {stem(w) for w, first in _words(text) if not first and _capitalised(w)}


def content_tokens(text: str, names: frozenset[str] | set[str] = frozenset()) -> list[Token]:
    """The content tokens of ``text``, in order.

    A number is a token of digits; a name is a capitalised word of letters that does not open a
    sentence, or that does but is followed by another capitalised word ("Nora Quinn opened") or is in
    ``names`` (so "Critics argue" is no name).

    Args:
        text: Any text.
        names: Stems known to be names (:func:`name_stems` of the texts compared).

    Returns:
        One token per word that is not a stop word and has more than one character (a one-digit
        number stays), with its stem and kind.
    """
    words = _words(text)
    out = []
    for i, (word, first) in enumerate(words):
        if word.lower() in STOPWORDS or (len(word) == 1 and not word.isdigit()):
            continue
        s = stem(word)
        kind: Kind = "word"
        if word.isdigit():
            kind = "number"
        elif _capitalised(word):
            followed = i + 1 < len(words) and not words[i + 1][1] and _capitalised(words[i + 1][0])
            if not first or followed or s in names:
                kind = "name"
        out.append(Token(s, kind))
    return out


def _stems(tokens: list[Token]) -> set[str]:
    return {t.stem for t in tokens}


def _key_facts(tokens: list[Token]) -> dict[str, set[Kind]]:
    """Key fact stem -> its kinds; every fact when there are no numbers or names."""
    keys: dict[str, set[Kind]] = {}
    for t in tokens:
        if t.kind != "word":
            keys.setdefault(t.stem, set()).add(t.kind)
    if not keys:
        keys = {t.stem: {"word"} for t in tokens}
    return keys


def accuracy(answer: str, reference: str, post: str) -> float:
    """The reference's key facts the answer states, against the key facts it gets wrong.

    Args:
        answer: The answer to grade.
        reference: The reference summary.
        post: The source post.

    Returns:
        ``correct / (correct + CONTRADICTION_WEIGHT * wrong)`` in [0, 1]; 0 when the answer states no
        key fact (see the module docstring for what counts as wrong).
    """
    names = name_stems(answer) | name_stems(reference) | name_stems(post)
    ans, ref = content_tokens(answer, names), content_tokens(reference, names)
    ref_keys, ref_stems, ans_stems = _key_facts(ref), _stems(ref), _stems(ans)
    grounded = ref_stems | _stems(content_tokens(post))
    word_keys = any("word" in kinds for kinds in ref_keys.values())
    correct = sum(1 for s in ref_keys if s in ans_stems)
    wrong = 0
    for kind in ("word",) if word_keys else ("number", "name"):
        missing = {s for s, kinds in ref_keys.items() if kind in kinds and s not in ans_stems}
        unsupported = {t.stem for t in ans if (word_keys or t.kind == kind) and t.stem not in ref_stems}
        invented = {s for s in unsupported if s not in grounded}
        wrong += max(min(len(missing), len(unsupported)), len(invented))
    stated = correct + CONTRADICTION_WEIGHT * wrong
    return correct / stated if stated else 0.0


def completeness(answer: str, reference: str) -> float:
    """The share of the reference's distinct facts (content tokens) the answer contains.

    Args:
        answer: The answer to grade.
        reference: The reference summary.

    Returns:
        A share in [0, 1]; 0 when the reference has no content token.
    """
    facts = _stems(content_tokens(reference))
    if not facts:
        return 0.0
    return len(facts & _stems(content_tokens(answer))) / len(facts)


def relevance(answer: str, reference: str, post: str) -> float:
    """The share of the answer's content tokens grounded in the post or the reference.

    Args:
        answer: The answer to grade.
        reference: The reference summary.
        post: The source post.

    Returns:
        A share in [0, 1] (repeated tokens count each time); 0 when the answer has no content token.
    """
    ans = content_tokens(answer)
    if not ans:
        return 0.0
    grounded = _stems(content_tokens(post)) | _stems(content_tokens(reference))
    return sum(t.stem in grounded for t in ans) / len(ans)


def is_wordlike(chunk: str) -> bool:
    """Whether a whitespace-separated chunk reads as a word or a number.

    Args:
        chunk: One chunk of text, punctuation at its edges included.

    Returns:
        True for a number, or letters (with inner ``'`` or ``-``) that contain a vowel (or are of a
        script without these vowels) and no character three times in a row; False for anything else
        (symbols inside, letters mixed with digits, "xqzt", "Quinnnn").
    """
    core = chunk.strip(_EDGE)
    if not core:
        return True  # a lone dash or ellipsis
    if core.replace(",", "").replace(".", "").isdigit():
        return True
    letters = core.replace("'", "").replace("’", "").replace("-", "")
    if not letters.isalpha() or _REPEATED_CHAR.search(letters.lower()):
        return False
    lower = letters.lower()
    latin = all(c.isascii() or c in _VOWELS for c in lower)
    return any(c in _VOWELS for c in lower) or not latin


def _repeated_share(words: list[str]) -> float:
    bigrams = list(zip(words, words[1:], strict=False))
    if not bigrams:
        return 0.0
    counts = Counter(bigrams)
    return sum(n - 1 for n in counts.values()) / len(bigrams)


def _length_factor(n_answer: int, n_reference: int) -> float:
    if n_reference == 0:
        return 1.0
    ratio = n_answer / n_reference
    low, high = LENGTH_BAND
    if ratio < low:
        return ratio / low
    return high / ratio if ratio > high else 1.0


def expression(answer: str, reference: str, post: str) -> float:
    """Fluency (no repetition, no non-words, a finished ending) times a length factor.

    Args:
        answer: The answer to grade.
        reference: The reference summary (its length and ending are the yardstick).
        post: The source post (its words are never non-words, whatever they look like).

    Returns:
        A value in [0, 1]; 0 for an answer without words.
    """
    chunks = answer.split()
    if not chunks:
        return 0.0
    known = {w.lower() for w in _WORD.findall(f"{post} {reference}")}
    nonwords = sum(1 for c in chunks if not is_wordlike(c) and c.strip(_EDGE).lower() not in known)
    words = [w.lower() for w in _WORD.findall(answer)]
    fluency = (1.0 - _repeated_share(words)) * max(0.0, 1.0 - NONWORD_COST * nonwords / len(chunks))
    if _SENTENCE_END.search(reference) and not _SENTENCE_END.search(answer):
        fluency *= TRUNCATION_FACTOR
    return fluency * _length_factor(len(chunks), len(reference.split()))


def rubric_axes(answer: str, reference: str, post: str) -> dict[str, float]:
    """All four axes of one answer.

    Args:
        answer: The answer to grade.
        reference: The reference summary.
        post: The source post.

    Returns:
        ``accuracy``, ``relevance``, ``completeness`` and ``expression``, each in [0, 1].
    """
    return {
        "accuracy": accuracy(answer, reference, post),
        "relevance": relevance(answer, reference, post),
        "completeness": completeness(answer, reference),
        "expression": expression(answer, reference, post),
    }
