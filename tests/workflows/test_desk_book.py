"""The desk's decisions without a server (core/desk.py `DeskBook`): routing order, skills,
declines, and the figures as Asterisk's app_queue computes them."""

from __future__ import annotations

import itertools

import core.desk as d


def book(**cfg: float) -> d.DeskBook:
    ids = itertools.count(1)
    return d.DeskBook(d.DeskConfig(**cfg), None, lambda: f"o{next(ids)}")  # type: ignore[arg-type]


def rep(b: d.DeskBook, rep_id: str, at: float, *skills: str, state: str = "available") -> None:
    b.set_rep(d.SetRep(rep_id, rep_id, state, list(skills or ("general",))), at)


def test_the_longest_waiting_call_goes_to_the_longest_idle_rep_with_its_skill() -> None:
    b = book()
    rep(b, "new", 50)
    rep(b, "old", 10)
    rep(b, "sales_only", 0, "sales")
    b.enqueue(d.Enqueue("e1", "c1"), 100)
    b.enqueue(d.Enqueue("e2", "c2"), 101)
    b.tick(102)
    assert {o.call_id: o.rep_id for o in b.offers.values()} == {"c1": "old", "c2": "new"}


def test_a_declined_call_goes_to_someone_else_never_back() -> None:
    b = book()
    rep(b, "ann", 0)
    rep(b, "bob", 5)
    b.enqueue(d.Enqueue("e1", "c1"), 10)
    b.tick(10)
    (offer,) = b.offers.values()
    assert b.answer(d.AnswerOffer("ann", offer.id, False), 11) is None
    b.tick(11)
    assert [o.rep_id for o in b.offers.values()] == ["bob"]
    b.answer(d.AnswerOffer("bob", next(iter(b.offers)), False), 12)
    b.tick(12)
    assert not b.offers and [w.call_id for w in b.waiting] == ["c1"]  # still waits


def test_figures_as_asterisk_defines_them() -> None:
    b = book(service_level_s=20)
    rep(b, "ann", 0)
    for n, wait in enumerate((8, 40)):  # answered after 8 s (within 20), then after 40 s
        b.enqueue(d.Enqueue(f"e{n}", f"c{n}"), 100 * n)
        b.tick(100 * n)
        b.answer(d.AnswerOffer("ann", next(iter(b.offers)), True), 100 * n + wait)
        b.set_rep(d.SetRep("ann", "ann", "wrap_up"), 100 * n + wait + 30)  # handled 30 s
        b.set_rep(d.SetRep("ann", "ann", "available"), 100 * n + wait + 31)
    b.enqueue(d.Enqueue("e9", "c9"), 500)
    b.call_left(d.CallLeft("l9", "c9"), 505)
    s = b.stats(505)
    assert s.service_level_pct == 50.0  # answered within 20 s / answered
    assert s.abandon_rate_pct == round(100 / 3, 1)  # abandoned / (answered + abandoned)
    assert s.average_wait_s == 24.0 and s.average_handle_s == 30.0
    assert s.holdtime_s == round((3 * (8 / 4) + 40) / 4, 1)  # (3 * old + new) / 4 from 0
