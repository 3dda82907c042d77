"""The garbage collector's settings during a simulated run, and after it."""

from __future__ import annotations

import gc

import pytest

from hpsteer.runtime.simulation.engine import GC_YOUNG_THRESHOLD, _collector_for_a_long_run


def test_during_a_run_what_was_built_is_frozen_and_young_collections_are_rarer() -> None:
    before = gc.get_threshold()
    with _collector_for_a_long_run():
        assert gc.get_freeze_count() > 0
        assert gc.get_threshold() == (GC_YOUNG_THRESHOLD, *before[1:])
    assert before[0] < GC_YOUNG_THRESHOLD


def test_after_a_run_even_an_interrupted_one_the_collector_is_as_it_was() -> None:
    before = gc.get_threshold()
    with pytest.raises(KeyboardInterrupt), _collector_for_a_long_run():
        raise KeyboardInterrupt
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0
