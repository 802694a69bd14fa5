"""The embedded demo dataset: short news-like documents carrying facts, with reference summaries.

Each document reports one event: a person (first and last name) did something (an action) in a
town on a weekday, and a number of people took part. The reference summary states exactly those
five facts in one fixed sentence shape::

    Nora Quinn opened the bakery in Ashford on Monday; 40 people came.

so that a tiny model can learn the shape while the *content* has to be copied from the document.
Difficulty is graded (levels 0..3) by how hard the facts are to pick out:

* level 0: the two key sentences in canonical wording, no distractors;
* level 1: paraphrased key sentences plus one distractor and one filler sentence;
* level 2: paraphrases, two distractors that reuse some of the event's fields, order shuffled;
* level 3: paraphrases, four confusable distractors (other people, other days, last year's count),
  order shuffled.

The SFT split's references can be *vague about the count* (``vague_share`` of them, drawn per
document): ``Nora Quinn opened the bakery in Ashford on Monday; a crowd came.``, as imperfect human
summaries are. The other splits' references (the judge's gold) are always exact. The phrase needs no
copying, so an SFT model prefers it over any one count (measured: 10% of the SFT data gives it 2% of
the samples at temperature 0.35, 30% gives 95%); the offline judge grades it as two mistakes, and the
preference feedback has something to correct that the SFT data taught.

Generation is deterministic: every document is built from its own ``random.Random`` seeded with
``"{seed}:{split}:{index}"`` (string seeds hash with SHA-512, independent of PYTHONHASHSEED), so a
split's documents do not change when another split's size changes, and ids (``demo-<split>-<index>``)
are disjoint across splits by construction.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Literal, TypeVar

T = TypeVar("T")
Split = Literal["train", "calibration", "test", "eval"]
SPLITS: tuple[Split, ...] = ("train", "calibration", "test", "eval")
LEVELS = 4

FIRST_NAMES = (
    "Nora", "Liam", "Ava", "Omar", "Mia", "Ivan", "Zoe", "Hugo", "Lena", "Theo", "Ruth", "Amir",
    "Iris", "Felix", "Maya", "Oscar", "Tara", "Jonas", "Elsa", "Kofi", "Nina", "Pablo", "Vera", "Sami",
    "Greta", "Leo", "Anya", "Milo", "Rosa", "Yusuf",
)  # fmt: skip
LAST_NAMES = (
    "Quinn", "Patel", "Moreno", "Fischer", "Okafor", "Lind", "Novak", "Brennan", "Sato", "Duval",
    "Hale", "Kowal", "Reyes", "Berg", "Marsh", "Adler", "Costa", "Walsh", "Ito", "Grant", "Petrov",
    "Lopez", "Shaw", "Engel", "Noor", "Price", "Varga", "Stone", "Keller", "Mensah",
)  # fmt: skip
TOWNS = (
    "Ashford", "Brookvale", "Carden", "Dunmore", "Elmstead", "Fairhaven", "Glenrock", "Harlow",
    "Ivybridge", "Kingsley", "Lakemoor", "Millbrook", "Northam", "Oakridge", "Pinewood", "Redcliff",
    "Stonebury", "Thornton", "Westfield", "Yarrow",
)  # fmt: skip
DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
# (past-tense action as it appears in the summary, noun phrase used in paraphrases)
ACTIONS = (
    ("opened the bakery", "the opening of the bakery"),
    ("won the cycling race", "the cycling race"),
    ("led the river cleanup", "the river cleanup"),
    ("hosted the book fair", "the book fair"),
    ("repaired the old bridge", "the repair of the old bridge"),
    ("organised the charity run", "the charity run"),
    ("opened the new library", "the opening of the new library"),
    ("ran the farmers market", "the farmers market"),
    ("directed the school play", "the school play"),
    ("launched the food bank", "the launch of the food bank"),
    ("planted the community garden", "the planting of the community garden"),
    ("judged the baking contest", "the baking contest"),
)
ROLES = (
    "baker",
    "teacher",
    "nurse",
    "farmer",
    "student",
    "mechanic",
    "librarian",
    "painter",
    "doctor",
    "chef",
)
COUNTS = (12, 15, 20, 25, 30, 40, 45, 50, 60, 70, 80, 90, 120, 150, 200, 250, 300, 400)
FILLERS = (
    "Local shops stayed open late.",
    "The weather was mild for the season.",
    "Tea and cake were served afterwards.",
    "A brass band played near the square.",
    "The council thanked everyone who helped.",
    "Photos were shared online the next day.",
    "Parking near the centre was limited.",
    "Children painted signs for the event.",
)


@dataclass(frozen=True)
class DemoDoc:
    """One generated document with its reference summary and the facts it carries."""

    prompt_id: str
    split: str
    difficulty: int
    post: str
    reference: str
    name: str
    action: str
    town: str
    day: str
    count: int

    def row(self) -> dict[str, str]:
        """The prompt row (prompt_id, post, reference; ``rluf_ray.schema``).

        Returns:
            ``{"prompt_id": ..., "post": ..., "reference": ...}``.
        """
        return {"prompt_id": self.prompt_id, "post": self.post, "reference": self.reference}

    def to_dict(self) -> dict[str, object]:
        """Every field of the document, facts included, as a plain dict.

        Returns:
            Field name -> value (``prompt_id``, ``split``, ``difficulty``, ``post``, ``reference``, ``name``,
            ``action``, ``town``, ``day``, ``count``).
        """
        return asdict(self)


def doc_id(split: str, index: int) -> str:
    """The stable id of document ``index`` of ``split``.

    Args:
        split: The split name (``train``, ``calibration``, ``test`` or ``eval``).
        index: The document's index within its split, >= 0.

    Returns:
        ``demo-<split>-<index>`` with the index zero-padded to six digits.
    """
    return f"demo-{split}-{index:06d}"


def _other(rng: random.Random, pool: tuple[T, ...], avoid: T) -> T:
    while True:
        value = rng.choice(pool)
        if value != avoid:
            return value


def _event_sentence(rng: random.Random, name: str, role: str, act: tuple[str, str], town: str, day: str,
                    paraphrase: bool) -> str:  # fmt: skip
    verb, noun = act
    if not paraphrase:
        return f"{name}, a {role} from {town}, {verb} on {day}."
    forms = (
        f"{name}, a {role} from {town}, {verb} on {day}.",
        f"On {day}, {name} {verb} in {town}.",
        f"In {town}, the {role} {name} {verb} on {day}.",
        f"{name} from {town} {verb} this {day}.",
        f"It was {name}, a local {role}, who {verb} in {town} on {day}.",
        f"{town} saw {noun} on {day}, led by {name}.",
    )
    return rng.choice(forms)


def _count_sentence(rng: random.Random, count: int, paraphrase: bool) -> str:
    if not paraphrase:
        return f"{count} people came."
    forms = (
        f"{count} people came.",
        f"About {count} people came to watch.",
        f"The crowd numbered around {count}.",
        f"Some {count} residents took part.",
        f"Organisers counted {count} visitors.",
    )
    return rng.choice(forms)


def _distractor(rng: random.Random, name: str, town: str, day: str, count: int, act: tuple[str, str],
                confusable: bool) -> str:  # fmt: skip
    """A sentence mentioning other people, places, days or counts (never a second copy of the facts)."""
    other_name = f"{rng.choice(FIRST_NAMES)} {rng.choice(LAST_NAMES)}"
    while other_name == name:
        other_name = f"{rng.choice(FIRST_NAMES)} {rng.choice(LAST_NAMES)}"
    other_town = _other(rng, TOWNS, town)
    other_day = _other(rng, DAYS, day)
    other_count = _other(rng, COUNTS, count)
    other_act = _other(rng, ACTIONS, act)
    first = name.split()[0]
    forms: tuple[str, ...]
    if confusable:
        forms = (
            f"Last year only {other_count} people came.",
            f"{other_name} had planned it for {other_day}.",
            f"{first}'s cousin {other_name} lives in {other_town}.",
            f"A week earlier, {other_name} {other_act[0]} in {other_town}.",
            f"The mayor of {other_town} said {other_count} tickets were printed.",
            f"Next {other_day}, {other_name} will visit {town}.",
        )
    else:
        forms = (
            f"Meanwhile, {other_name} {other_act[0]} in {other_town}.",
            f"{other_town} plans a similar event next month.",
            f"The road from {other_town} was closed on {other_day}.",
        )
    return rng.choice(forms)


VAGUE_COUNT = "a crowd came"
"""What a vague SFT reference says instead of ``<count> people came``."""


def make_doc(seed: int, split: str, index: int, vague_share: float = 0.0) -> DemoDoc:
    """Generate document ``index`` of ``split`` (deterministic in ``seed``, ``split``, ``index``).

    Its difficulty level is ``index % 4`` (see the module docstring).

    Args:
        seed: The dataset seed.
        split: The split name; it seeds the document and names its id.
        index: The document's index within its split, >= 0.
        vague_share: The probability that a *train* document's reference says "a crowd came" instead
            of the count (drawn last, so the document itself does not depend on it); ignored for
            other splits.

    Returns:
        The document with its reference and the facts it carries.
    """
    rng = random.Random(f"{seed}:{split}:{index}")
    level = index % LEVELS
    name = f"{rng.choice(FIRST_NAMES)} {rng.choice(LAST_NAMES)}"
    role = rng.choice(ROLES)
    act = rng.choice(ACTIONS)
    town = rng.choice(TOWNS)
    day = rng.choice(DAYS)
    count = rng.choice(COUNTS)
    paraphrase = level > 0
    event = _event_sentence(rng, name, role, act, town, day, paraphrase)
    crowd = _count_sentence(rng, count, paraphrase)
    n_distract = (0, 1, 2, 4)[level]
    n_filler = (0, 1, 1, 2)[level]
    extra: list[str] = []
    while len(extra) < n_distract:  # distinct distractor sentences
        sentence = _distractor(rng, name, town, day, count, act, confusable=level >= 2)
        if sentence not in extra:
            extra.append(sentence)
    extra += rng.sample(FILLERS, n_filler)
    if level <= 1:
        sentences = [event, crowd, *extra]
    else:  # key facts may appear anywhere, but the event comes before the count
        sentences = list(extra)
        i = rng.randint(0, len(sentences))
        sentences.insert(i, event)
        j = rng.randint(i + 1, len(sentences))
        sentences.insert(j, crowd)
    post = " ".join(sentences)
    reference = f"{name} {act[0]} in {town} on {day}; {count} people came."
    if split == "train" and vague_share > 0 and rng.random() < vague_share:
        reference = f"{name} {act[0]} in {town} on {day}; {VAGUE_COUNT}."
    return DemoDoc(doc_id(split, index), split, level, post, reference, name, act[0], town, day, count)


def iter_docs(
    seed: int, split: str, count: int, start: int = 0, vague_share: float = 0.0
) -> Iterator[DemoDoc]:
    """Documents ``start .. start+count-1`` of ``split``, generated lazily.

    Args:
        seed: The dataset seed.
        split: One of ``SPLITS``.
        count: Number of documents.
        start: Index of the first document.
        vague_share: Share of vague-count references in the train split (see ``make_doc``).

    Yields:
        The documents in index order.

    Raises:
        ValueError: ``split`` is not one of ``SPLITS`` (raised on the first ``next``).
    """
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
    for i in range(start, start + count):
        yield make_doc(seed, split, i, vague_share)


def corpus_texts(seed: int, count: int = 400) -> Iterator[str]:
    """Text for training the embedded tokenizer: posts and references of the first training docs.

    Args:
        seed: The dataset seed.
        count: Number of train documents to draw from.

    Yields:
        Each document's post, then its reference (``2 * count`` strings in all).
    """
    for doc in iter_docs(seed, "train", count):
        yield doc.post
        yield doc.reference
