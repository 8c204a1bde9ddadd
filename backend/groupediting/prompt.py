"""The text an edit encodes: the release's prompt built from a description of the *result*.

The release prompts ``same {description} in four scenes.``, where the description names the subject as it should
look after the edit ("robotic fox with segmented armor plates and glowing tail core"), not the instruction. A job
carries the artist's instruction and, optionally, such a description and the subject's label (the Blender object's
name). :func:`edit_text` resolves them into the strings actually encoded; without a description one is derived
from the instruction by :func:`describe_result`, whose rules are (case-insensitive, first that applies):

1. ``change|convert|transform|switch X to|into Y``  ->  ``Y X``
2. ``replace X with Y``  ->  ``Y``
3. ``add Y to X``  ->  ``X with Y``;  ``give X Y`` (X a pronoun or ``the <word>``)  ->  ``X with Y``
4. ``make|turn|paint|colour|color|dye|recolour|recolor|render|restyle|retexture X [into|to|as|look like|out of] Y``
   -> ``Y X``. Without one of those words, X ends before the first colour, tone or material word the classical
   editor knows (``make the jacket red leather`` -> ``red leather jacket``), else after its first word.
5. anything else (``weathered bronze``)  ->  ``<instruction> X``

X is the part named in the instruction; a pronoun or a generic word (it, them, this, that, everything, the object,
the model, the asset, the mesh) or no X at all stands for the subject label, and without a label for "object".
Leading "please", a leading article of Y and a trailing full stop are dropped. The derived text is reported with
the result (metadata ``text``), so the artist sees what the model was told and can give a description instead.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any

from ..editors.instruction import COLOURS, MATERIALS, TONES
from .recipe import Recipe

#: Words that stand for "the subject" in an instruction.
GENERIC = {"it", "them", "this", "that", "everything", "object", "model", "asset", "mesh", "thing", "item"}
#: Words that end the named part in ``make X <word> Y``.
LINKS = ("look like", "looks like", "out of", "into", "to", "as", "in", "with")
#: Object-name prefixes of game and DCC naming conventions, dropped from labels.
NAME_PREFIXES = {"sm", "sk", "geo", "mesh", "obj", "mdl", "prop"}
ATTRIBUTES = set(COLOURS) | set(TONES) | set(MATERIALS)
_NUMBERS = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
            "sixteen seventeen eighteen nineteen twenty").split()
_MAKE = r"make|turn|paint|colou?r|dye|recolou?r|render|restyle|retexture"
_DETERMINERS = {"the", "this", "that", "its", "his", "her", "their", "a", "an"}


@dataclass(frozen=True)
class EditText:
    """The resolved text of one edit: what the artist said and what the model is given.

    ``description_source``: ``"given"`` (the job's description) or ``"derived"`` (:func:`describe_result`).
    """

    instruction: str
    description: str
    description_source: str
    subject: str
    prompt: str
    negative_prompt: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def count_words(n: int) -> str:
    """``4`` -> ``"four"`` (up to twenty; digits beyond)."""
    return _NUMBERS[n] if 0 <= n < len(_NUMBERS) else str(n)


def subject_label(name: str | None) -> str:
    """A prompt-friendly label from an object name: ``"SM_Office_Chair.001"`` -> ``"office chair"``.

    Drops Blender's ``.001`` suffix, splits ``snake_case``, ``kebab-case`` and ``CamelCase``, drops digits and
    common prefixes (SM, SK, GEO, MESH, ...), lower-cases. Empty results become ``"object"``.
    """
    if not name:
        return "object"
    text = re.sub(r"\.\d+$", "", name.strip())
    text = re.sub(r"(?<=[a-z])(?=[A-Z])", " ", text)
    words = [w for w in re.split(r"[\s_\-.]+", text.lower()) if w and not w.isdigit()]
    while words and words[0] in NAME_PREFIXES and len(words) > 1:
        words = words[1:]
    return " ".join(words) or "object"


def _clean(text: str) -> str:
    text = re.sub(r"\s+", " ", text).strip().rstrip(".!")
    return re.sub(r"^please\s+", "", text, flags=re.IGNORECASE).strip()


def _named(part: str, subject: str) -> str:
    """The named part without its determiner; generic words and nothing stand for ``subject``."""
    words = part.split()
    while words and words[0].lower() in _DETERMINERS:
        words = words[1:]
    if not words or " ".join(words).lower() in GENERIC:
        return subject
    return " ".join(words)


def _strip_article(text: str) -> str:
    return re.sub(r"^(a|an)\s+", "", text.strip(), flags=re.IGNORECASE)


def _split_make(rest: str) -> tuple[str, str]:
    """``X [link] Y`` of a make-style instruction (see rule 4)."""
    words = rest.split()
    lower = [w.lower() for w in words]
    if lower and lower[0] in GENERIC:
        rest = " ".join(words[1:])
        for link in LINKS:
            if rest.lower().startswith(link + " "):
                return words[0], rest[len(link) + 1:]
        return words[0], rest
    for i in range(len(words)):
        for link in LINKS:
            size = len(link.split())
            if " ".join(lower[i:i + size]) == link and i > 0:
                return " ".join(words[:i]), " ".join(words[i + size:])
    start = 1 if lower and lower[0] in _DETERMINERS else 0
    for i in range(start, len(words)):
        if re.sub(r"[^a-z]", "", lower[i]) in ATTRIBUTES:
            return " ".join(words[:i]), " ".join(words[i:])
    return " ".join(words[: start + 1]), " ".join(words[start + 1:])


def describe_result(instruction: str, subject: str = "object") -> str:
    """A description of the edited subject derived from an instruction (rules in the module doc)."""
    text = _clean(instruction)
    m = re.match(r"^(?:change|convert|transform|switch)\s+(.*?)\s+(?:to|into)\s+(.+)$", text, re.IGNORECASE)
    if m:
        return f"{_strip_article(m.group(2))} {_named(m.group(1), subject)}"
    m = re.match(r"^replace\s+(.*?)\s+with\s+(.+)$", text, re.IGNORECASE)
    if m:
        return _strip_article(m.group(2))
    m = re.match(r"^add\s+(.+?)\s+to\s+(.+)$", text, re.IGNORECASE)
    if m:
        return f"{_named(m.group(2), subject)} with {m.group(1)}"
    m = re.match(r"^give\s+(it|them|this|that|the\s+\S+)\s+(.+)$", text, re.IGNORECASE)
    if m:
        return f"{_named(m.group(1), subject)} with {m.group(2)}"
    m = re.match(rf"^(?:{_MAKE})\s+(.+)$", text, re.IGNORECASE)
    if m:
        part, look = _split_make(m.group(1))
        if look:
            return f"{_strip_article(look)} {_named(part, subject)}"
        return _named(part, subject)
    return f"{text} {subject}" if text else subject


def edit_text(recipe: Recipe, instruction: str, count: int, description: str | None = None,
              subject: str | None = None, negative_prompt: str | None = None) -> EditText:
    """The text of an edit of ``count`` views under ``recipe`` (see the module doc).

    ``description``: what the result shows (used as is when given); ``subject``: the object's name or label;
    ``negative_prompt``: overrides the recipe's.
    """
    label = subject_label(subject)
    if description and description.strip():
        desc, source = _clean(description), "given"
    else:
        desc, source = describe_result(instruction, label), "derived"
    prompt = recipe.prompt_template.format(description=desc, count=count_words(count))
    negative = recipe.negative_prompt if negative_prompt is None else negative_prompt
    return EditText(instruction=instruction, description=desc, description_source=source, subject=label,
                    prompt=prompt, negative_prompt=negative)
