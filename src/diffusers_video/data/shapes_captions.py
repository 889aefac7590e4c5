"""Vocabulary, captions, the caption parser and the held-out caption split of the moving-shapes world.

The world has four attributes per shape (colour, shape, direction, speed) and a background kind. Captions are
written from several templates with synonyms, so a text encoder has to learn words rather than strings, and
`parse_prompt` reads back any caption the templates can write (plus captions that leave attributes out).

The held-out split is by attribute *combination*: 24 of the 168 (colour, shape, direction, speed) combinations
are never shown in training (`split="train"`), so a benchmark that generates from `split="heldout"` captions
measures generation from captions the model has not seen, while every single word still occurs in training.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

SHAPES: tuple[str, ...] = ("circle", "square", "triangle")
COLORS: tuple[str, ...] = ("red", "green", "blue", "yellow", "white", "magenta", "cyan")
DIRECTIONS: tuple[str, ...] = ("left", "right", "up", "down")
SPEEDS: tuple[str, ...] = ("slow", "fast")
BACKGROUNDS: tuple[str, ...] = ("plain", "textured")

# Distance a shape travels between the first and the last frame of a clip, as a fraction of the frame's width
# (horizontal motion) or height (vertical motion). Defined per clip, so a clip keeps its speed label when it is
# sampled with more frames. The scorer's slow/fast threshold is the geometric mean of the two.
SLOW_TRAVEL = 0.2
FAST_TRAVEL = 0.45

# RGB in [0, 1]. Every colour has a channel at 1, so colours differ in chromaticity, not in brightness.
PALETTE: dict[str, tuple[float, float, float]] = {
    "red": (1.0, 0.0, 0.0),
    "green": (0.0, 1.0, 0.0),
    "blue": (0.0, 0.0, 1.0),
    "yellow": (1.0, 1.0, 0.0),
    "white": (1.0, 1.0, 1.0),
    "magenta": (1.0, 0.0, 1.0),
    "cyan": (0.0, 1.0, 1.0),
}

# Unit vector of each direction in image coordinates (x to the right, y downwards).
DIRECTION_VECTORS: dict[str, tuple[int, int]] = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1)}

# Words the parser maps to attribute values (synonyms included).
_WORD_TO_ATTRIBUTE: dict[str, tuple[str, str]] = {
    **{word: ("color", word) for word in COLORS},
    **{word: ("shape", word) for word in SHAPES},
    **{word: ("direction", "left") for word in ("left", "leftward", "leftwards")},
    **{word: ("direction", "right") for word in ("right", "rightward", "rightwards")},
    **{word: ("direction", "up") for word in ("up", "upward", "upwards")},
    **{word: ("direction", "down") for word in ("down", "downward", "downwards")},
    **{word: ("speed", "slow") for word in ("slow", "slowly")},
    **{word: ("speed", "fast") for word in ("fast", "quickly", "quick", "rapidly")},
    **{word: ("background", "plain") for word in ("plain", "dark")},
    "textured": ("background", "textured"),
}
# Words that carry no attribute. "and" separates the shapes of a two-shape caption.
_FILLER_WORDS = frozenset(
    "a an the one is moving moves move going goes heading heads sliding slides travelling traveling travels "
    "to toward towards in on over across of with colored coloured background shape".split()
)
_ATTRIBUTES = ("color", "shape", "direction", "speed")

# Phrases the caption writer draws from; every word in them is known to the parser.
_DIRECTION_PHRASES = {
    "left": ("left", "to the left", "leftward"),
    "right": ("right", "to the right", "rightward"),
    "up": ("up", "upward", "upwards"),
    "down": ("down", "downward", "downwards"),
}
_SPEED_ADVERBS = {"slow": ("slowly",), "fast": ("quickly", "fast", "rapidly")}
_SPEED_ADJECTIVES = {"slow": ("slow",), "fast": ("fast", "quick")}
_VIDEO_TEMPLATES = (
    "a {color} {shape} moving {direction} {speed_adverb}",
    "{color} {shape} going {direction} {speed_adverb}",
    "a {speed_adjective} {color} {shape} moving {direction}",
    "the {color} {shape} slides {direction} {speed_adverb}",
    "{speed_adverb} moving {direction}, a {color} {shape}",
    "a {shape} in {color} heading {direction} {speed_adverb}",
)
_IMAGE_TEMPLATES = ("a {color} {shape}", "{color} {shape}", "a {shape} in {color}", "the {color} {shape}")
_BACKGROUND_PHRASES = {
    "plain": ("on a dark background", "on a plain background"),
    "textured": ("on a textured background",),
}


@dataclass(frozen=True)
class ShapeSpec:
    """The attributes of one shape. In a parsed prompt, an attribute the prompt does not mention is `None`.

    Args:
        color (`str | None`): one of `COLORS`.
        shape (`str | None`): one of `SHAPES`.
        direction (`str | None`): one of `DIRECTIONS`.
        speed (`str | None`): one of `SPEEDS`.
    """

    color: str | None = None
    shape: str | None = None
    direction: str | None = None
    speed: str | None = None

    def __post_init__(self):
        for name, vocabulary in zip(_ATTRIBUTES, (COLORS, SHAPES, DIRECTIONS, SPEEDS)):
            value = getattr(self, name)
            if value is not None and value not in vocabulary:
                raise ValueError(f"`{name}` must be one of {vocabulary} or None, but is {value!r}.")

    @property
    def combination(self) -> tuple[str | None, str | None, str | None, str | None]:
        """`(color, shape, direction, speed)`."""
        return (self.color, self.shape, self.direction, self.speed)


@dataclass(frozen=True)
class ParsedPrompt:
    """The result of `parse_prompt`.

    Args:
        objects (`tuple[ShapeSpec, ...]`): one spec per shape, in the order the prompt names them.
        background (`str | None`): "plain", "textured" or `None` when the prompt does not say.
    """

    objects: tuple[ShapeSpec, ...]
    background: str | None = None


def _known_words_message() -> str:
    return (
        f"known colours {', '.join(COLORS)}; shapes {', '.join(SHAPES)}; directions {', '.join(DIRECTIONS)} "
        f"(and -ward/-wards); speeds slow(ly), fast/quick(ly)/rapidly; backgrounds dark, plain, textured"
    )


def parse_prompt(prompt: str) -> ParsedPrompt:
    """Read the attributes named by a caption of the moving-shapes world.

    Punctuation and case are ignored; "and" separates the shapes of a two-shape caption. Attributes that the
    prompt does not mention are `None` in the result.

    Args:
        prompt (`str`): e.g. "a red circle moving right quickly" or "red circle going to the left slowly and a
            blue square moving up fast".

    Returns:
        `ParsedPrompt`: one `ShapeSpec` per shape, plus the background if named.

    Raises:
        ValueError: for a word outside the world's vocabulary (the message names it), for one shape given two
            different values of an attribute, or for a prompt that names no attribute at all.
        TypeError: if `prompt` is not a string.
    """
    if not isinstance(prompt, str):
        raise TypeError(f"`prompt` must be a string, but is {type(prompt).__name__} ({prompt!r}).")
    words = re.findall(r"[a-z]+", prompt.lower())
    clauses: list[dict[str, str]] = [{}]
    background = None
    for word in words:
        if word == "and":
            clauses.append({})
            continue
        if word in _FILLER_WORDS:
            continue
        if word not in _WORD_TO_ATTRIBUTE:
            raise ValueError(f"Unknown word {word!r} in prompt {prompt!r}; {_known_words_message()}.")
        attribute, value = _WORD_TO_ATTRIBUTE[word]
        if attribute == "background":
            background = value
            continue
        clause = clauses[-1]
        if clause.get(attribute, value) != value:
            raise ValueError(
                f"Prompt {prompt!r} names two {attribute}s ({clause[attribute]!r} and {value!r}) for one shape; "
                "separate shapes with 'and'."
            )
        clause[attribute] = value
    objects = tuple(ShapeSpec(**clause) for clause in clauses if clause)
    if not objects:
        raise ValueError(f"Prompt {prompt!r} names no colour, shape, direction or speed; {_known_words_message()}.")
    return ParsedPrompt(objects=objects, background=background)


def _pick(rng: np.random.Generator, options: tuple[str, ...]) -> str:
    return options[int(rng.integers(len(options)))]


def write_caption(
    objects: tuple[ShapeSpec, ...] | list[ShapeSpec],
    rng: np.random.Generator,
    background: str | None = None,
    still: bool = False,
) -> str:
    """Write a caption for a scene, choosing a template and synonyms with `rng`.

    Args:
        objects (`tuple[ShapeSpec, ...]`): the shapes, fully specified (for `still=True`, colour and shape suffice).
        rng (`np.random.Generator`): source of the template and synonym choices.
        background (`str | None`, defaults to `None`): when given, a background phrase is appended with
            probability 1/2.
        still (`bool`, defaults to `False`): write a caption for a still image (no motion words).

    Returns:
        `str`: the caption; `parse_prompt` reads it back to the same attributes.
    """
    clauses = []
    for spec in objects:
        if still:
            clauses.append(_pick(rng, _IMAGE_TEMPLATES).format(color=spec.color, shape=spec.shape))
            continue
        template = _pick(rng, _VIDEO_TEMPLATES)
        clause = template.format(
            color=spec.color,
            shape=spec.shape,
            direction=_pick(rng, _DIRECTION_PHRASES[spec.direction]),
            speed_adverb=_pick(rng, _SPEED_ADVERBS[spec.speed]),
            speed_adjective=_pick(rng, _SPEED_ADJECTIVES[spec.speed]),
        )
        clauses.append(clause[0].lower() + clause[1:])
    caption = " and ".join(clauses)
    if background is not None and rng.random() < 0.5:
        caption = f"{caption} {_pick(rng, _BACKGROUND_PHRASES[background])}"
    return caption


def all_combinations() -> list[tuple[str, str, str, str]]:
    """All 168 `(color, shape, direction, speed)` combinations, in a fixed order."""
    return [(c, s, d, v) for c in COLORS for s in SHAPES for d in DIRECTIONS for v in SPEEDS]


def is_heldout(color: str, shape: str, direction: str, speed: str) -> bool:
    """Whether a combination belongs to the held-out split.

    The rule is a fixed Latin-square-like pattern: for every (shape, direction, speed) exactly one colour is held
    out, so the 24 held-out combinations cover every colour, shape, direction and speed.
    """
    index = COLORS.index(color) + 2 * SHAPES.index(shape) + 3 * DIRECTIONS.index(direction) + 5 * SPEEDS.index(speed)
    return index % len(COLORS) == 0


def split_combinations(split: str) -> list[tuple[str, str, str, str]]:
    """The combinations of a caption split.

    Args:
        split (`str`): "train" (144 combinations), "heldout" (24) or "all" (168).

    Returns:
        `list[tuple[str, str, str, str]]`: `(color, shape, direction, speed)` tuples in a fixed order.
    """
    if split not in ("train", "heldout", "all"):
        raise ValueError(f"`split` must be 'train', 'heldout' or 'all', but is {split!r}.")
    combos = all_combinations()
    if split == "all":
        return combos
    return [combo for combo in combos if is_heldout(*combo) == (split == "heldout")]
