"""Notebook prose states facts; results and times come from the run (covidgan_utils.prose)."""

import pytest

from covidgan_utils import pipeline, prose


def test_the_check_finds_a_typed_result_and_lets_facts_and_marked_lines_pass():
    assert prose.hand_numbers("The GAN reached 0.812 accuracy in 3.4 min.") == ["0.812", "3.4min"]
    assert prose.hand_numbers("The report: 0.958 -> 0.974, lr 2e-4, `epochs = 20`.") == []
    assert prose.hand_numbers("Drawn in 25% of the images. <!-- fact -->") == []


@pytest.mark.parametrize("book", pipeline.available_notebooks(), ids=lambda p: p.stem)
def test_no_notebook_types_a_result_into_its_markdown(book):
    assert prose.check_notebook(book) == []
