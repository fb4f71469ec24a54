"""sessionlab bench: the figures it prints are measured on every implementation and baseline it names.

Timings are never asserted; what is checked is that each figure comes from runs that did the work.
"""

from __future__ import annotations

import json

import pytest

from sessionlab.api import SessionNotFound
from sessionlab.bench import baselines, throughput
from sessionlab.cli import main


@pytest.mark.parametrize("name, factory", baselines.available())
def test_each_baseline_keeps_the_contract_the_benchmark_uses(name, factory):
    store = factory()
    ada = store.create_session("u-1", "Ada")
    store.update_session(ada, "theme", "dark")
    assert [store.increment_access(ada) for _ in range(3)] == [1, 2, 3]
    session = store.get_session(ada)
    assert (session.user_id, session.access_count, dict(session.metadata)) == ("u-1", 3, {"theme": "dark"})
    store.delete_session(ada)
    with pytest.raises(SessionNotFound):
        store.get_session(ada)


def test_every_workload_runs_its_operations_on_every_implementation():
    figures = throughput.measure(["buggy", "fixed"], workloads=throughput.WORKLOADS, threads=(1, 4), repeats=2,
                                 operations=200)
    names = ["buggy", "fixed"] + [name for name, _ in baselines.available()]
    assert {(f.workload, f.threads, f.implementation) for f in figures} == {
        (w, t, n) for w in throughput.WORKLOADS for t in (1, 4) for n in names}
    assert all(len(f.runs) == 2 and f.ops_per_second > 0 for f in figures)
    rows = list(throughput.rows(figures, names))
    assert len(rows) == len(throughput.WORKLOADS) * 2 and all(float(row[-1]) > 0 for row in rows)


def test_the_command_prints_json(capsys):
    code = main(["bench", "--workloads", "increment", "--threads", "2", "--repeats", "1", "--operations", "100",
                 "--impl", "buggy", "--impl", "fixed", "--json"])
    figures = json.loads(capsys.readouterr().out)["operations"]
    assert code == 0 and {f["implementation"] for f in figures} >= {"buggy", "fixed", "dict + lock"}
    assert all(f["workload"] == "increment" and f["threads"] == 2 and f["ops_per_second"] > 0 for f in figures)


def test_the_other_costs_are_measured_on_real_runs():
    import fixed
    from sessionlab import implementations
    from sessionlab.bench import costs

    assert costs.memory_per_deleted_session(fixed.SessionManager, cycles=2_000) <= 16  # nothing kept
    assert costs.linearizability_seconds_per_1000_calls(fixed.SessionManager, repeats=1) > 0
    seconds = costs.exploration_seconds(implementations.load("fixed"), repeats=1)
    assert set(seconds) >= {"lost-updates", "stale-cache", "lock-order-deadlock"} and min(seconds.values()) > 0


def test_requests_per_second_over_http_for_a_manager_and_plain_flask():
    pytest.importorskip("waitress")
    from sessionlab.bench import costs

    rates = costs.http_requests_per_second([("fixed", costs.served("fixed")),
                                            ("plain Flask", costs.PLAIN_FLASK)], users=3, requests=8, repeats=1)
    assert set(rates) == {"fixed", "plain Flask"} and min(rates.values()) > 0
