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


def test_a_broken_history_is_filed_under_the_kind_of_wrong_it_shows():
    """A read handed a session without a key an update set is a lost update, whichever scenario ran."""
    import dataclasses

    from sessionlab.engines.linearizability import kinds
    from sessionlab.engines.linearizability.recording import HistoryRecorder
    from sessionlab.engines.stress import owners_of

    class Forgetful:
        """A store whose reads forget every update: what a read that saves the whole session back does."""

        def __init__(self, manager):
            self.manager = manager

        def __getattr__(self, name):
            return getattr(self.manager, name)

        def get_session(self, session_id):
            return dataclasses.replace(self.manager.get_session(session_id), metadata={})

    recorder = HistoryRecorder()
    manager = recorder.wrap(Forgetful(implementations.load("fixed").new_manager()))
    session_id = manager.create_session("user-0", "Ada")
    manager.update_session(session_id, "cart", "3 books")
    manager.get_session(session_id)
    verdict = recorder.check()
    assert not verdict.ok and kinds.kind_of(verdict) == kinds.LOST_UPDATE, verdict.reason
    assert owners_of(verdict) == {"lost-updates"}
