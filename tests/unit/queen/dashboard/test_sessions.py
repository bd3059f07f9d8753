"""Dashboard sessions and the failed-login throttle, on a fake clock."""

from __future__ import annotations

from rbee.core.clock import FakeClock
from rbee.queen.dashboard.login import LoginThrottle
from rbee.queen.dashboard.sessions import SessionStore, cookie_value, csrf_ok


def test_a_session_maps_an_opaque_id_to_a_key_id_until_it_expires() -> None:
    clock = FakeClock()
    store = SessionStore(clock, ttl=100.0)
    sid, session = store.create("abc123")
    assert session.key_id == "abc123" and "abc123" not in sid and len(sid) >= 40
    assert store.get(sid) == session
    clock.advance(99.0)
    assert store.get(sid) == session
    clock.advance(1.0)
    assert store.get(sid) is None and len(store) == 0  # dropped, not only refused


def test_a_session_never_outlives_its_key() -> None:
    clock = FakeClock()
    store = SessionStore(clock, ttl=1000.0)
    sid, session = store.create("k", key_expires_at=clock.time() + 10.0)
    assert session.expires_at == clock.time() + 10.0
    clock.advance(10.0)
    assert store.get(sid) is None


def test_ids_and_csrf_tokens_are_random_and_distinct() -> None:
    store = SessionStore(FakeClock())
    made = [store.create("k") for _ in range(50)]
    values = {sid for sid, _ in made} | {s.csrf_token for _, s in made}
    assert len(values) == 100


def test_the_oldest_sessions_go_first_when_full() -> None:
    store = SessionStore(FakeClock(), max_sessions=3)
    first, _ = store.create("a")
    later = [store.create(k)[0] for k in "bcd"]
    assert store.get(first) is None and all(store.get(s) for s in later) and len(store) == 3


def test_ending_sessions_one_or_all_of_a_key() -> None:
    store = SessionStore(FakeClock())
    a1, _ = store.create("a")
    a2, _ = store.create("a")
    b, _ = store.create("b")
    store.end(a1)
    assert store.get(a1) is None and store.get(a2) is not None
    store.end_key("a")
    assert store.get(a2) is None and store.get(b) is not None


def test_hostile_cookie_values_find_nothing() -> None:
    store = SessionStore(FakeClock())
    store.create("a")
    for value in ("", "x" * 10_000, "\x00", "../../etc", "' OR 1=1 --"):
        assert store.get(value) is None


def test_the_csrf_check_wants_exactly_the_token() -> None:
    _, session = SessionStore(FakeClock()).create("a")
    assert csrf_ok(session, session.csrf_token)
    assert not csrf_ok(session, None)
    assert not csrf_ok(session, "")
    assert not csrf_ok(session, session.csrf_token[:-1])
    assert not csrf_ok(session, session.csrf_token + "x")


def test_the_session_cookie_is_found_among_others() -> None:
    assert cookie_value("a=1; rbee_session=s3cr3t; b=2") == "s3cr3t"
    assert cookie_value("rbee_session=") == ""
    assert cookie_value("xrbee_session=1; other") is None
    assert cookie_value(None) is None and cookie_value("") is None
    # a second one (planted by a page on another port or a sibling domain): neither counts
    assert cookie_value("rbee_session=attacker; rbee_session=victim") is None


def test_one_key_logging_in_again_and_again_pushes_out_only_its_own_sessions() -> None:
    from rbee.queen.dashboard.sessions import MAX_PER_KEY

    store = SessionStore(FakeClock(), max_sessions=100)
    admin_id, _ = store.create("admin-key")
    ids = [store.create("user-key")[0] for _ in range(MAX_PER_KEY + 10)]
    assert store.get(admin_id) is not None
    assert sum(store.get(i) is not None for i in ids) == MAX_PER_KEY
    assert store.get(ids[-1]) is not None and store.get(ids[0]) is None


def test_failed_logins_are_throttled_per_address_within_a_window() -> None:
    clock = FakeClock()
    throttle = LoginThrottle(clock, max_failures=3, window=60.0)
    for _ in range(3):
        assert throttle.retry_after("1.2.3.4") is None
        throttle.failed("1.2.3.4")
    wait = throttle.retry_after("1.2.3.4")
    assert wait is not None and 0 < wait <= 60.0
    assert throttle.retry_after("5.6.7.8") is None  # others are not punished
    clock.advance(61.0)
    assert throttle.retry_after("1.2.3.4") is None
    # a success in between does not wipe the count: bad tries still add up
    for _ in range(3):
        throttle.failed("1.2.3.4")
    assert throttle.retry_after("1.2.3.4") is not None
