"""core.proposals: hunks follow typing around them, typing inside makes a proposal stale, accepts and rejects of some
hunks keep the rest in place, and one live proposal per range."""

from __future__ import annotations

import pytest

from kimi_lsp.core.actions import BUILTIN_ACTIONS
from kimi_lsp.core.edits import apply_edits, minimal_edits
from kimi_lsp.core.pipeline import Job, Outcome
from kimi_lsp.core.proposals import Proposals
from kimi_lsp.kimi.models import BUILTIN_MODELS
from kimi_lsp.settings import DEFAULTS

TEXT = "head\nalpha\nbeta\ngamma\ndelta\ntail\n"
NEW = "head\nALPHA\nbeta\nGAMMA\ndelta\ntail\n"
SEL = (TEXT.index("alpha"), TEXT.index("tail"))


def job(start: int = SEL[0], end: int = SEL[1], text: str = TEXT) -> Job:
    return Job(BUILTIN_ACTIONS["refactor"], text, start, end, DEFAULTS, BUILTIN_MODELS["kimi-k2.5"], "r1")


def proposal(store: Proposals, text: str = TEXT, new: str = NEW):
    j = job(text=text)
    edits = minimal_edits(j.selection, new[j.start : len(new) - (len(text) - j.end)], j.start)
    return store.propose("u", j, Outcome("r1", "kimi-k2.5", text="code"), edits)[0]


def test_hunks_are_the_minimal_edits():
    p = proposal(Proposals())
    assert [(h.id, h.old, h.new) for h in p.hunks] == [("h1", "alpha\n", "ALPHA\n"), ("h2", "gamma\n", "GAMMA\n")]
    assert all(TEXT[h.start : h.end] == h.old for h in p.hunks)


def type_at(text: str, at: int, typed: str, removed: int = 0) -> str:
    return text[:at] + typed + text[at + removed :]


# (where the user types, what, how much they delete) -> stale?
TYPING = [
    (0, "import os\n", 0, False),  # above
    (len(TEXT), "more\n", 0, False),  # below
    (TEXT.index("beta"), "b", 0, False),  # between two hunks
    (TEXT.index("alpha") + 1, "x", 0, True),  # inside h1
    (TEXT.index("gamma"), "", 6, True),  # deleting h2
    (TEXT.index("head"), "", 5, False),  # deleting the line above
]


@pytest.mark.parametrize("at,typed,removed,stale", TYPING)
def test_typing_moves_or_stales(at, typed, removed, stale):
    store = Proposals()
    p = proposal(store)
    now = type_at(TEXT, at, typed, removed)
    went = store.changed("u", now)
    assert (went == [p]) == stale and (p.state == "stale") == stale
    if not stale:
        assert all(now[h.start : h.end] == h.old for h in p.hunks)
        hunks = p.hunks
        assert store.check(p, hunks, now) is None
        edits = store.begin_accept(p, hunks)
        assert apply_edits(now, edits) == type_at(NEW, at if at < SEL[0] else at + 0, typed, removed)
    else:
        assert "stale" in (store.check(p, p.hunks, now) or "")


def test_accept_some_hunks_then_the_rest():
    store = Proposals()
    p = proposal(store)
    [h1, h2] = p.hunks
    edits = store.begin_accept(p, [h2])
    after = apply_edits(TEXT, edits)
    assert store.changed("u", after) == []  # the editor's didChange for our own edit is recognised
    assert [h.id for h in p.hunks] == ["h1"] and p.state == "ready"
    edits = store.begin_accept(p, [p.hunks[0]])
    store.end_accept(p, True, apply_edits(after, edits))
    assert p.state == "accepted" and p.id not in store.by_id


def test_accept_recognised_when_the_answer_comes_before_the_change():
    store = Proposals()
    p = proposal(store)
    edits = store.begin_accept(p, [p.hunks[0]])
    store.end_accept(p, True, apply_edits(TEXT, edits))
    assert [h.id for h in p.hunks] == ["h2"]
    assert store.changed("u", apply_edits(TEXT, edits)) == [] and p.state == "ready"


def test_a_declined_accept_changes_nothing():
    store = Proposals()
    p = proposal(store)
    store.begin_accept(p, p.hunks)
    store.end_accept(p, False, TEXT)
    assert [h.id for h in p.hunks] == ["h1", "h2"] and p.pending is None and p.state == "ready"


def test_changed_text_under_a_hunk_is_refused():
    store = Proposals()
    p = proposal(store)
    assert "h1" in (store.check(p, p.hunks, TEXT.replace("alpha", "alphx")) or "")


def test_reject_some_then_all():
    store = Proposals()
    p = proposal(store)
    assert store.drop(p, ["h1"]) == ["h1"] and p.state == "ready"
    assert store.drop(p, None) == ["h2"] and p.state == "rejected" and not store.by_id


def test_pick_names_unknown_hunks():
    store = Proposals()
    p = proposal(store)
    hunks, why = store.pick(p, ["h2", "h9"])
    assert hunks == [] and "h9" in (why or "")
    assert [h.id for h in store.pick(p, ["h2", "h2"])[0]] == ["h2"]


@pytest.mark.parametrize(
    "second,replaces",
    [
        (SEL, True),  # the same range
        ((SEL[0] + 2, SEL[1] - 2), True),  # inside it
        ((0, 4), False),  # the line above: a different range
    ],
)
def test_one_live_proposal_per_range(second, replaces):
    store = Proposals()
    first = proposal(store)
    _, replaced = store.propose("u", job(*second), Outcome("r2", "m", text=""), [])
    assert (replaced == [first]) == replaces
    assert (first.state == "replaced") == replaces


def test_closing_makes_every_proposal_stale():
    store = Proposals()
    p = proposal(store)
    assert store.closed("u") == [p] and p.state == "stale" and not store.by_id


def test_refined_hunks_get_new_ids():
    store = Proposals()
    p = proposal(store)
    p.turns = [{"role": "assistant", "content": "x"}, {"role": "user", "content": "y"}]
    store.refined(p, Outcome("r3", "m", text="z"), minimal_edits("beta\n", "BETA\n", TEXT.index("beta")), TEXT)
    assert [h.old for h in p.hunks] == ["beta\n"] and p.hunks[0].id not in ("h1", "h2")


def test_a_half_applied_accept_is_not_stale():
    """Neovim applies a multi-hunk edit hunk by hunk and may report the text in between."""
    store = Proposals()
    p = proposal(store)
    edits = store.begin_accept(p, p.hunks)
    half = apply_edits(TEXT, edits[1:])
    assert store.changed("u", half) == [] and p.state == "ready"
    store.end_accept(p, True, apply_edits(TEXT, edits))
    assert p.state == "accepted"
