"""The text an edit encodes: the release's template of a description of the result, and Wan's negative prompt."""

import pytest

from backend.groupediting.prompt import count_words, describe_result, edit_text, subject_label
from backend.groupediting.recipe import RECIPES, WAN_NEGATIVE_PROMPT


@pytest.mark.parametrize("instruction, description", [
    ("make the jacket red leather", "red leather jacket"),
    ("make it red", "red suzanne"),
    ("Please paint the car dark green.", "dark green car"),
    ("turn the cup blue", "blue cup"),
    ("turn it into gold", "gold suzanne"),
    ("make it look like weathered bronze", "weathered bronze suzanne"),
    ("make the wooden chair look like marble", "marble wooden chair"),
    ("make the car rusty", "rusty car"),
    ("change the sofa to green velvet", "green velvet sofa"),
    ("convert it into a glass sculpture", "glass sculpture suzanne"),
    ("replace the wood with polished marble", "polished marble"),
    ("add gold trim to the jacket", "jacket with gold trim"),
    ("give it a rusty finish", "suzanne with a rusty finish"),
    ("weathered bronze", "weathered bronze suzanne"),
])
def test_description_rules(instruction, description):
    assert describe_result(instruction, "suzanne") == description


def test_subject_labels_from_object_names():
    assert subject_label("SM_Office_Chair.001") == "office chair"
    assert subject_label("GEO_armChair_02") == "arm chair"
    assert subject_label("Avocado") == "avocado"
    assert subject_label("Cube.003") == "cube"
    assert subject_label("") == subject_label(None) == subject_label("123") == "object"


def test_release_prompt_and_negative_prompt_strings():
    text = edit_text(RECIPES["release"], "make it red leather", 4, subject="Jacket.001")
    assert text.prompt == "same red leather jacket in four scenes."
    assert (text.description, text.description_source, text.subject) == ("red leather jacket", "derived", "jacket")
    assert text.negative_prompt == WAN_NEGATIVE_PROMPT
    assert WAN_NEGATIVE_PROMPT.startswith("色调艳丽，过曝，静态，细节模糊不清，字幕") and WAN_NEGATIVE_PROMPT.endswith("倒着走")
    given = edit_text(RECIPES["exact"], "make it red", 8, description="robotic fox with glowing tail core")
    assert given.prompt == "same robotic fox with glowing tail core in eight scenes."
    assert given.description_source == "given"
    assert edit_text(RECIPES["release"], "x", 2, negative_prompt="").negative_prompt == ""
    assert count_words(4) == "four" and count_words(32) == "32"
