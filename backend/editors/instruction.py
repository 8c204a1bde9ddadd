"""Understand the colour and simple material words of an instruction ("make the shirt dark red leather").

Recognised: hex colours (``#2a6f3c``, ``#f00``), colour names (:data:`COLOURS`), tone words
(:data:`TONES`: dark, light, bright, muted ...) and material words (:data:`MATERIALS`: matte, glossy,
metallic ...). Everything else is ignored; an instruction with no colour and no reference image is
an error that says which words are understood.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

#: sRGB colours by name (CSS values where CSS has the name).
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (200, 30, 30), "crimson": (220, 20, 60), "maroon": (128, 0, 0), "burgundy": (128, 0, 32),
    "orange": (255, 140, 0), "amber": (255, 191, 0), "yellow": (240, 210, 30), "gold": (212, 175, 55),
    "green": (40, 150, 50), "lime": (50, 205, 50), "olive": (128, 128, 0), "emerald": (0, 155, 90),
    "teal": (0, 128, 128), "cyan": (0, 190, 210), "turquoise": (64, 224, 208), "blue": (30, 70, 200),
    "navy": (0, 0, 128), "azure": (0, 127, 255), "indigo": (75, 0, 130), "purple": (128, 0, 128),
    "violet": (143, 0, 255), "magenta": (255, 0, 255), "pink": (255, 140, 180), "rose": (255, 0, 127),
    "brown": (120, 72, 40), "tan": (210, 180, 140), "beige": (225, 210, 180), "khaki": (195, 176, 145),
    "white": (245, 245, 245), "ivory": (255, 255, 240), "cream": (255, 253, 208), "silver": (192, 192, 192),
    "grey": (128, 128, 128), "gray": (128, 128, 128), "black": (20, 20, 20), "charcoal": (54, 69, 79),
    "copper": (184, 115, 51), "bronze": (205, 127, 50), "mint": (152, 255, 152), "lavender": (181, 126, 220),
    "coral": (255, 127, 80), "salmon": (250, 128, 114), "mustard": (225, 173, 1), "sand": (194, 178, 128),
}

#: Tone words: (lightness shift in OKLab L, chroma factor).
TONES: dict[str, tuple[float, float]] = {
    "dark": (-0.18, 1.0), "deep": (-0.12, 1.15), "light": (0.15, 0.8), "pale": (0.2, 0.5),
    "bright": (0.08, 1.3), "vivid": (0.0, 1.4), "muted": (0.0, 0.55), "dull": (-0.03, 0.5), "pastel": (0.18, 0.45),
}

#: Material words: (contrast factor for lightness detail, highlight boost), applied around the mean.
MATERIALS: dict[str, tuple[float, float]] = {
    "matte": (0.7, 0.0), "velvet": (0.75, 0.0), "fabric": (0.85, 0.0), "cloth": (0.85, 0.0), "wool": (0.8, 0.0),
    "leather": (1.1, 0.05), "plastic": (1.0, 0.1), "glossy": (1.25, 0.15), "shiny": (1.25, 0.15),
    "lacquered": (1.3, 0.2), "metallic": (1.5, 0.25), "metal": (1.5, 0.25), "chrome": (1.8, 0.35),
}

_HEX = re.compile(r"#([0-9a-fA-F]{6}|[0-9a-fA-F]{3})\b")


@dataclass(frozen=True)
class ColourIntent:
    """What an instruction asks for: a target sRGB colour (or None), tone and material adjustments."""

    colour: tuple[int, int, int] | None
    lightness_shift: float = 0.0
    chroma_factor: float = 1.0
    contrast: float = 1.0
    highlight: float = 0.0
    words: tuple[str, ...] = ()


def parse_instruction(text: str) -> ColourIntent:
    """Parse the colour, tone and material words of ``text`` (case-insensitive)."""
    colour = None
    m = _HEX.search(text)
    if m:
        h = m.group(1)
        h = "".join(c * 2 for c in h) if len(h) == 3 else h
        colour = (int(h[0:2], 16), int(h[2:4], 16), int(h[4:6], 16))
    words = re.findall(r"[a-z]+", _HEX.sub(" ", text.lower()))
    used: list[str] = []
    if colour is None:
        for w in words:  # the last colour word wins: "turn the red cup blue" -> blue
            if w in COLOURS:
                colour = COLOURS[w]
        used += [w for w in words if w in COLOURS][-1:]
    shift, chroma, contrast, highlight = 0.0, 1.0, 1.0, 0.0
    for w in words:
        if w in TONES:
            shift += TONES[w][0]
            chroma *= TONES[w][1]
            used.append(w)
        if w in MATERIALS:
            contrast *= MATERIALS[w][0]
            highlight += MATERIALS[w][1]
            used.append(w)
    return ColourIntent(colour, shift, chroma, contrast, highlight, tuple(used))
