"""The persistent contract (sessionlab.judge.persistent_contract): it holds on fixed and on buggy, and it
rejects wrong fixes a learner plausibly writes, each with a message that names what broke.

Each wrong fix is fixed/ with one or two methods of PersistentSessionManager rewritten
(``variants.variant`` on a copy of fixed/), so only that rewrite can break the contract.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import variants

from sessionlab import catalogue, implementations
from sessionlab.judge import checks, contract, persistent_contract

MANAGER = persistent_contract.MANAGER
ROOT = Path(__file__).resolve().parent.parent

WRONG = {
    # The sweep forgets the status condition: every idle session expires, finished ones too.
    "expiry that expires finished sessions": ({"PersistentSessionManager.expire_sessions": '''
        def expire_sessions(self):
            cutoff = self._clock() - self._ttl
            with self._db_lock:
                self._check_open()
                with self._transaction():
                    expired = [row[0] for row in self._db.execute(
                        "UPDATE sessions SET status = 'expired' WHERE deleted = 0 AND status != 'expired' "
                        "AND last_update < ? RETURNING session_id", (cutoff,)).fetchall()]
                    self._db.execute("DELETE FROM sessions WHERE deleted = 1")
                with self._cache_lock:
                    for session_id in expired:
                        self._cache.pop(session_id, None)
            return len(expired)
        '''}, r"expire_sessions\(\) expired a completed session: a finished job's status was rewritten to expired$"),
    # One statement decides for every live session: idle ones expire, touched ones "start over" as pending.
    "expiry that puts touched sessions back as pending": ({"PersistentSessionManager.expire_sessions": '''
        def expire_sessions(self):
            cutoff = self._clock() - self._ttl
            with self._db_lock:
                self._check_open()
                with self._transaction():
                    rows = self._db.execute(
                        "UPDATE sessions SET status = CASE WHEN last_update < ? THEN 'expired' ELSE 'pending' END "
                        "WHERE deleted = 0 AND status IN (?, ?) RETURNING session_id, status",
                        (cutoff, *_EXPIRING)).fetchall()
                    self._db.execute("DELETE FROM sessions WHERE deleted = 1")
                with self._cache_lock:
                    for session_id, _ in rows:
                        self._cache.pop(session_id, None)
            return sum(status == "expired" for _, status in rows)
        '''}, r"expire_sessions\(\) left a session written 59 s before by update_session as 'pending', not "
              r"'in_progress': a session written within the ttl keeps its status"),
    # A returning user counts as active again: the expired session is renewed instead of refused.
    "increment that renews an expired session": ({"PersistentSessionManager.increment_access": '''
        def increment_access(self, session_id):
            check_session_id(session_id)
            now = self._clock()
            with self._db_lock:
                self._check_open()
                with self._transaction():
                    self._row(session_id)
                    count = self._db.execute(
                        "UPDATE sessions SET access_count = access_count + 1, last_update = ?, "
                        "status = CASE WHEN status = 'expired' THEN 'pending' ELSE status END "
                        "WHERE session_id = ? RETURNING access_count", (now, session_id)).fetchone()[0]
                self._refresh(session_id)
            return count
        '''}, r"increment_access accepted an expired session, returned int 1 and renewed it \(.*get_status\(\) "
              r"'expired' -> 'pending'.*\); it must raise SessionExpired and change nothing$"),
    # One guarded UPDATE, and "no row" taken to mean "no session".
    "increment that says an expired session is not found": ({"PersistentSessionManager.increment_access": '''
        def increment_access(self, session_id):
            check_session_id(session_id)
            now = self._clock()
            with self._db_lock:
                self._check_open()
                with self._transaction():
                    row = self._db.execute(
                        "UPDATE sessions SET access_count = access_count + 1, last_update = ? WHERE session_id = ? "
                        "AND deleted = 0 AND status != 'expired' RETURNING access_count", (now, session_id)).fetchone()
                    if row is None:
                        raise SessionNotFound(session_id)
                self._refresh(session_id)
            return row[0]
        '''}, r"increment_access raised SessionNotFound \(\S*persistent\.py:\d+ in "
              r"PersistentSessionManager\.increment_access\) for an expired session; the contract says "
              r"SessionExpired: it must raise SessionExpired and change nothing$"),
    # "Re-run a finished job": completed may go back to in_progress.
    "set_status that reopens a completed session": ({"PersistentSessionManager.set_status": '''
        def set_status(self, session_id, status):
            check_session_id(session_id)
            if type(status) is not str or status not in STATUSES:
                raise InvalidInput(f"status must be one of {', '.join(STATUSES)}")
            allowed = {**_NEXT, "completed": ("in_progress",)}
            now = self._clock()
            with self._db_lock:
                self._check_open()
                with self._transaction():
                    current = self._row(session_id)[3]
                    if status not in allowed[current]:
                        raise IllegalTransition(f"a session that is {current} cannot become {status}")
                    self._db.execute("UPDATE sessions SET status = ?, last_update = ? WHERE session_id = ?",
                                     (status, now, session_id))
                self._refresh(session_id)
        '''}, r"set_status accepted completed -> in_progress \(get_session\(\)\.last_accessed .*, get_status\(\) "
              r"'completed' -> 'in_progress'\); a completed session may become nothing else"),
    # Every request touches its session first, in its own transaction: a refused move still renews it.
    "set_status that touches the session before refusing": ({"PersistentSessionManager.set_status": '''
        def set_status(self, session_id, status):
            check_session_id(session_id)
            if type(status) is not str or status not in STATUSES:
                raise InvalidInput(f"status must be one of {', '.join(STATUSES)}")
            now = self._clock()
            with self._db_lock:
                self._check_open()
                self._write("UPDATE sessions SET last_update = ? WHERE session_id = ? AND deleted = 0",
                            (now, session_id))
                with self._transaction():
                    current = self._row(session_id)[3]
                    if status not in _NEXT[current]:
                        raise IllegalTransition(f"a session that is {current} cannot become {status}")
                    self._db.execute("UPDATE sessions SET status = ?, last_update = ? WHERE session_id = ?",
                                     (status, now, session_id))
                self._refresh(session_id)
        '''}, r"set_status refused pending -> pending, a second manager opened on the same file reads that "
              r"get_session\(\)\.last_accessed is 1000062\.0, not 1000061\.0: a manager answers what the database "
              r"holds, and a refused call changes neither$"),
    # current_file written as given: a call without one erases it.
    "record_progress that overwrites current_file with None": ({"PersistentSessionManager.record_progress": '''
        def record_progress(self, session_id, *, processed=1, current_file=None, failed_file=None):
            check_session_id(session_id)
            if type(processed) is not int or not 0 <= processed < 2**31:
                raise InvalidInput("processed must be a whole number, 0 or more")
            for name, value in (("current_file", current_file), ("failed_file", failed_file)):
                if value is not None:
                    check_name(name, value)
            self._write_live(session_id, "processed = processed + ?, current_file = ?, "
                             "failed_files = CASE WHEN ? IS NULL THEN failed_files "
                             "ELSE json_insert(failed_files, '$[#]', ?) END",
                             (processed, current_file, failed_file, failed_file))
        '''}, r"after record_progress\(s, processed=0, failed_file='b.pcap'\), get_progress\(\)\.current_file is "
              r"None, not 'a.pcap' \(processed adds up, current_file is kept when a call gives none"),
    # The failure recorded by the UPDATE, and once more "to be sure".
    "record_progress that records a failed file twice": ({"PersistentSessionManager.record_progress": '''
        def record_progress(self, session_id, *, processed=1, current_file=None, failed_file=None):
            check_session_id(session_id)
            if type(processed) is not int or not 0 <= processed < 2**31:
                raise InvalidInput("processed must be a whole number, 0 or more")
            for name, value in (("current_file", current_file), ("failed_file", failed_file)):
                if value is not None:
                    check_name(name, value)
            self._write_live(session_id, "processed = processed + ?, current_file = COALESCE(?, current_file), "
                             "failed_files = CASE WHEN ? IS NULL THEN failed_files "
                             "ELSE json_insert(failed_files, '$[#]', ?) END",
                             (processed, current_file, failed_file, failed_file))
            if failed_file is not None:
                self._write_live(session_id, "failed_files = json_insert(failed_files, '$[#]', ?)", (failed_file,))
        '''}, r"after record_progress\(s, processed=0, failed_file='b.pcap'\), get_progress\(\)\.failed_files is "
              r"\('b.pcap', 'b.pcap'\), not \('b.pcap',\)"),
    # Processed files counted in memory, to spare a write per file: a restart, or another process, loses them.
    "progress counted only in memory": ({"PersistentSessionManager.record_progress": '''
        def record_progress(self, session_id, *, processed=1, current_file=None, failed_file=None):
            check_session_id(session_id)
            if type(processed) is not int or not 0 <= processed < 2**31:
                raise InvalidInput("processed must be a whole number, 0 or more")
            for name, value in (("current_file", current_file), ("failed_file", failed_file)):
                if value is not None:
                    check_name(name, value)
            self._write_live(session_id, "current_file = COALESCE(?, current_file), "
                             "failed_files = CASE WHEN ? IS NULL THEN failed_files "
                             "ELSE json_insert(failed_files, '$[#]', ?) END", (current_file, failed_file, failed_file))
            with self._cache_lock:
                counted = self.__dict__.setdefault("_processed", {})
                counted[session_id] = counted.get(session_id, 0) + processed
        ''', "PersistentSessionManager.get_progress": '''
        def get_progress(self, session_id):
            check_session_id(session_id)
            with self._db_lock:
                self._check_open()
                self._row(session_id)
                total, _, current, failed = self._db.execute(
                    "SELECT total, processed, current_file, failed_files FROM sessions WHERE session_id = ?",
                    (session_id,)).fetchone()
            with self._cache_lock:
                processed = self.__dict__.get("_processed", {}).get(session_id, 0)
            return Progress(total, processed, current, tuple(json.loads(failed)))
        '''}, r"after expire_sessions\(\), a second manager opened on the same file reads that an idle pending "
              r"session's get_progress\(\)\.processed is 0, not 2, .*: the database does not hold what this manager "
              r"answers$"),
    # A status poll counts as activity: reading the status keeps the session alive.
    "get_status that refreshes the session": ({"PersistentSessionManager.get_status": '''
        def get_status(self, session_id):
            check_session_id(session_id)
            now = self._clock()
            with self._db_lock:
                self._check_open()
                status = self._row(session_id)[3]
                self._write("UPDATE sessions SET last_update = ? WHERE session_id = ?", (now, session_id))
                return status
        '''}, r"expire_sessions\(\) left an idle pending session as 'pending', not 'expired': a session not written "
              r"for 61 s \(the ttl is 60 s\) expires; reads do not refresh it$"),
    # A logout goes through the same guard as every write: an expired session cannot log out.
    "delete_session that refuses an expired session": ({"PersistentSessionManager.delete_session": '''
        def delete_session(self, session_id):
            check_session_id(session_id)
            with self._db_lock:
                self._check_open()
                with self._transaction():
                    self._require_live(session_id)
                    self._db.execute("UPDATE sessions SET deleted = 1 WHERE session_id = ?", (session_id,))
                with self._cache_lock:
                    self._cache.pop(session_id, None)
        '''}, r"delete_session raised SessionExpired \(\S*persistent\.py:\d+ in PersistentSessionManager\._require_live"
              r"\) for an expired session; an expired session can still log out"),
    # A total checked with isinstance: True passes as 1.
    "set_total that takes a bool": ({"PersistentSessionManager.set_total": '''
        def set_total(self, session_id, total):
            check_session_id(session_id)
            if not isinstance(total, int) or total < 0:
                raise InvalidInput("total must be a whole number, 0 or more")
            self._write_live(session_id, "total = ?", (total,))
        '''}, r"set_total accepted total bool True \(get_session\(\)\.last_accessed .*, get_progress\(\)\.total 4 "
              r"-> 1\); a total is an int >= 0$"),
}


@pytest.fixture
def reference_with(tmp_path, monkeypatch):
    """A maker of copies of fixed/ with methods rewritten: variants.variant, pointed at fixed/ instead of buggy/."""
    root = tmp_path / "root"
    shutil.copytree(ROOT / "fixed", root / "buggy", ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(variants, "ROOT", root)
    return lambda name, replacements: variants.variant(tmp_path, name, replacements, module="persistent.py")


@pytest.mark.parametrize("name", ["fixed", "buggy"])
def test_every_persistent_check_holds(name):
    for check_name, check in persistent_contract.contract_checks():
        figure = check(implementations.load(name))
        assert figure.held, f"{name}: {check_name}: {figure.summary}"


@pytest.mark.parametrize("name", ["fixed", "buggy"])
def test_the_contract_of_the_persistent_class_covers_both_tracks(name):
    track_1, persistent = len(contract.contract_checks()), len(persistent_contract.contract_checks())
    assert len(contract.contract_checks(MANAGER)) == track_1 + persistent >= track_1 + 6
    figure = contract.run_contract(implementations.load(name), MANAGER)
    assert figure.held and figure.summary.startswith(f"the contract holds: {track_1 + persistent} checks"), \
        figure.summary


def test_the_track_1_class_is_not_given_the_persistent_checks():
    assert [name for name, _ in contract.contract_checks()] == [
        name for name, _ in contract.contract_checks("SessionManager")]
    assert not {name for name, _ in persistent_contract.contract_checks()} & {
        name for name, _ in contract.contract_checks()}


def test_a_check_leaves_no_file_behind(tmp_path, monkeypatch):
    monkeypatch.setattr(persistent_contract.tempfile, "tempdir", str(tmp_path))
    for _, check in persistent_contract.contract_checks():
        assert check(implementations.load("fixed")).held
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", list(WRONG))
def test_the_contract_rejects_a_wrong_fix_and_says_what_broke(reference_with, name):
    replacements, message = WRONG[name]
    figure = contract.run_contract(reference_with(re.sub(r"\W+", "-", name), replacements), MANAGER)
    assert not figure.held, f"{name}: the contract held: {figure.summary}"
    assert re.search(r"^the contract broke: " + message, figure.summary), figure.summary


def test_the_judge_runs_the_persistent_contract_first_for_a_persistent_bug(reference_with):
    first = checks.checks_for(catalogue.home(catalogue.find("expiry-race")))[0]
    assert first.name == "the contract, one call at a time"
    replacements, message = WRONG["expiry that expires finished sessions"]
    figure = first.run(reference_with("finished", replacements))
    assert not figure.held and re.search(message, figure.summary), figure.summary


def test_the_copy_the_wrong_fixes_start_from_holds(reference_with):
    """Only the rewritten methods can break a wrong fix's contract: the copy of fixed/ itself holds."""
    unchanged = reference_with("unchanged", {})
    copied = Path(unchanged.origin).parent / "persistent.py"
    assert copied.read_text(encoding="utf-8") == (ROOT / "fixed" / "persistent.py").read_text(encoding="utf-8")
    assert contract.run_contract(unchanged, MANAGER).held
