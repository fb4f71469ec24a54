"""Every pair of operations on real threads: what a bounded search of the pairs through a framework missed."""

from __future__ import annotations

import pytest
from wild_fixes import django_cache_fix

from sessionlab import catalogue, implementations
from sessionlab.engines.exploration import Inconclusive
from sessionlab.judge import pairs, pairs_stress, wild

ok, why = wild.available()
if not ok:
    pytest.skip(why, allow_module_level=True)

WRONG = "the count by the cache's incr, the session still saved whole"


def test_an_update_lost_beside_an_increment_that_saves_the_whole_session_is_found(tmp_path):
    implementation = django_cache_fix(tmp_path, WRONG)
    figure = pairs_stress.stress(catalogue.find("lost-updates"), implementation)
    assert not figure.held, figure.summary
    assert "update and increment at once" in figure.summary, figure.summary
    assert "key 'cart' is 'empty' instead of '3 books'" in figure.summary or "access_count is" in figure.summary
    assert figure.summary.count("on real threads") == 1


def test_the_reference_fix_holds_every_pair_on_real_threads():
    figure = pairs_stress.stress(catalogue.find("lost-updates"), implementations.load("fixed.wild.django_cache"))
    assert figure.held, figure.summary
    rounds = len(pairs.pairs_for(catalogue.find("lost-updates"))) * len(pairs.STARTS) * pairs_stress.ROUNDS
    assert f"({rounds} rounds), all held" in figure.summary


def test_where_the_search_of_the_pairs_was_complete_real_threads_add_nothing():
    implementations.load("fixed.wild.django_cache")  # a subpackage of fixed on Django: not fixed's own code
    with pytest.raises(Inconclusive, match="complete"):
        pairs_stress.stress(catalogue.find("lost-updates"), implementations.load("fixed"))
