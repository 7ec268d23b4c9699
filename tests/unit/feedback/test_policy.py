from __future__ import annotations

from contextlib import closing
from pathlib import Path

import numpy as np
import pytest

from feedback.bandit import ThompsonBandit, context_of
from feedback.events import Event, EventType
from feedback.policy import Decision, Policy
from feedback.profile import ItemColumns, ProfileBook
from feedback.propensity import Propensities
from feedback.store import open_store


def click(i: int, request_id: str, position: int, type_: EventType = EventType.CLICK) -> Event:
    return Event(f"e{i}", request_id, "u", 1, type_, position, 0)


def test_propensities_start_at_the_prior_and_follow_randomised_clicks() -> None:
    p = Propensities(positions=4, prior_clicks=4.0)
    assert p.ratios().tolist() == pytest.approx([1, 1 / 2, 1 / 3, 1 / 4])
    assert p.weight(2) == pytest.approx(2.0)  # read before the clicks: a weight must follow them
    for _ in range(400):
        p.observe_click(1)
    for _ in range(300):
        p.observe_click(2)  # position 2 examined 3/4 as often as 1 ...
    for _ in range(350):
        p.observe_click(3)  # ... and a noisy 3 may not rank above 2: the estimate is non-increasing
    r = p.ratios()
    assert r[1] == pytest.approx(302 / 404, rel=1e-6) and r[2] == r[1]
    assert p.weight(1) == 1.0 and p.weight(2) == pytest.approx(404 / 302)
    assert p.weight(0) == p.weight(4) == p.weight(99)  # unknown or below: the last measured position
    assert Propensities(positions=10, prior_clicks=1.0, floor=0.05).weight(10) == pytest.approx(10.0)


def test_bandit_learns_the_arm_that_gets_interactions() -> None:
    bandit = ThompsonBandit(weights=(0.0, 1.0))
    rng = np.random.default_rng(0)
    truth = (0.1, 0.4)
    picks = []
    for _ in range(600):
        c = bandit.choose(25, rng)
        bandit.served(c)
        if rng.random() < truth[c.arm]:
            bandit.rewarded(c)
        picks.append(c.arm)
    assert c.context == context_of(25) == 2
    assert np.mean(picks[-200:]) > 0.85  # it settles on the better weight
    assert bandit.means()[2, 1] == pytest.approx(0.4, abs=0.06)
    assert bandit.trials[0].sum() == 0  # other contexts untouched


def test_a_thin_context_borrows_the_other_contexts_evidence_until_it_has_its_own() -> None:
    def first_context_picks(pooling: float) -> float:
        bandit = ThompsonBandit(weights=(0.0, 1.0), pooling=pooling)
        bandit.trials[1:] = 200  # contexts 1 and 2 know weight 1 is better (40% against 10%)
        bandit.successes[1:] = (20, 80)
        rng = np.random.default_rng(0)
        return float(np.mean([bandit.choose(1, rng).arm for _ in range(400)]))
    assert first_context_picks(0.0) == pytest.approx(0.5, abs=0.1)  # alone: a coin toss
    assert first_context_picks(0.3) > 0.95
    bandit = ThompsonBandit(weights=(0.0, 1.0), pooling=0.3)
    bandit.trials[1:], bandit.successes[1:] = 200, (20, 80)
    bandit.trials[0], bandit.successes[0] = 2000, (800, 200)  # its own, plentiful evidence says otherwise
    rng = np.random.default_rng(0)
    assert np.mean([bandit.choose(1, rng).arm for _ in range(400)]) < 0.05


def test_the_bandit_context_counts_interactions_not_impressions() -> None:
    items = ItemColumns.of(np.eye(4, dtype=np.float32), ["a", "b", "c", "d"], np.array([10.0, 20, 30, 40]))
    book = ProfileBook(items)
    shown = [Event(f"i{i}", "r", "u", i, EventType.IMPRESSION, i + 1, 1) for i in range(4)]
    book.apply(shown * 3 + [Event("c", "r", "u", 2, EventType.CLICK, 3, 1)])
    profile = book.get("u")
    assert profile is not None and profile.events == 13 and profile.interactions == 1
    assert context_of(profile.interactions) == 0  # one click: the thinnest context, whatever was shown
    session = book.for_request("u", [0, 1], 2)
    assert session is not None and session.interactions == 3 and session.events == 13


def test_policy_rewards_each_list_once_and_measures_position_on_shuffled_lists() -> None:
    policy = Policy(explore_share=0.5)
    decisions = [policy.decide(f"r{i}", "u", interactions=3) for i in range(40)]
    # Seeded by the request: the same state decides the same way.
    assert Policy(explore_share=0.5).decide("r0", "u", 3) == decisions[0]
    explored = [d for d in decisions if d.explore]
    assert 5 < len(explored) < 35
    before = policy.propensities.clicks.sum()
    d = explored[0]
    policy.learn([click(1, d.request_id, 3), click(2, d.request_id, 4, EventType.PURCHASE),
                  click(3, "unknown-request", 2), click(4, d.request_id, 1, EventType.IMPRESSION)])
    assert policy.propensities.clicks.sum() == before + 1  # the click only; purchases and impressions no
    assert policy.bandit.successes.sum() == 1  # one list, one reward
    assert policy.bandit.trials.sum() == 40


def test_a_draw_counts_only_once_recorded_and_a_retry_gets_the_recorded_decision() -> None:
    policy = Policy(explore_share=0.5)
    drawn = [policy.draw(f"r{i}", "u", interactions=3) for i in range(20)]
    assert policy.bandit.trials.sum() == 0  # drawn for lists that may yet be shed: no trial
    assert policy.record(drawn[:10]) == 10 and policy.bandit.trials.sum() == 10
    # A retry with the same request_id, after other lists moved the posterior: served as the first was.
    for _ in range(3):
        policy.record([policy.draw(f"x{_}", "u", 3)])
    assert [policy.draw(f"r{i}", "u", 3) for i in range(10)] == drawn[:10]
    assert policy.record(drawn[:10]) == 0 and policy.bandit.trials.sum() == 13  # counted once
    assert policy.decide("r0", "u", 3) == drawn[0]


def test_fixed_weight_policy_has_no_bandit() -> None:
    policy = Policy(bandit=False, fixed_weight=0.7, explore_share=0.0)
    d = policy.decide("r", "u", 50)
    assert (d.weight, d.arm, d.explore) == (0.7, -1, False)


def test_decisions_and_events_rebuild_the_same_policy_from_the_log(tmp_path: Path) -> None:
    online = Policy(explore_share=0.3)
    store = open_store(tmp_path)
    decided = [online.decide(f"r{i}", "u", i) for i in range(30)]
    events = [click(i, d.request_id, i % 10 + 1) for i, d in enumerate(decided) if i % 3 == 0]
    store.append(events, decided)
    online.learn(events)
    store.close()
    with closing(open_store(tmp_path)) as reopened:
        assert list(reopened.replay_decisions()) == decided
        rebuilt = Policy(explore_share=0.3)
        rebuilt.rebuild(reopened.replay_decisions(), ((e, d) for _, e, d in reopened.replay_decided()))
    assert np.array_equal(rebuilt.bandit.trials, online.bandit.trials)
    assert np.array_equal(rebuilt.bandit.successes, online.bandit.successes)
    assert np.array_equal(rebuilt.propensities.clicks, online.propensities.clicks)
    assert isinstance(decided[0], Decision)


def test_ctr_is_counted_by_the_arm_a_list_was_served_under() -> None:
    policy = Policy(bandit=False, fixed_weight=0.5, explore_share=0.0)
    policy.decide("personal", "u", 3)
    shown = [Event(f"i{rid}{k}", rid, "u", k, EventType.IMPRESSION, k + 1, 0)
             for rid in ("personal", "anonymous") for k in range(4)]
    clicks = [Event(f"c{n}", rid, "u", item, EventType.CLICK, item + 1, 0)
              for n, (rid, item) in enumerate([("personal", 1), ("personal", 2), ("anonymous", 0),
                                               ("never-shown", 1)])]  # a list without logged impressions
    policy.learn([*shown, *clicks])
    assert policy.ctr() == {"weight 0.5": 0.5, "unpersonalised": 0.25}


def test_a_restart_keeps_the_rewards_of_lists_older_than_the_tracked_window(tmp_path: Path) -> None:
    # Each list is clicked while it is in the window, so the running server rewarded all six; a rebuild
    # that records every decision before any event used to find only the newest three.
    online = Policy(explore_share=0.0, tracked=3)
    with closing(open_store(tmp_path)) as store:
        for i in range(6):
            d = online.decide(f"r{i}", "u", 3)
            clicked = [click(i, f"r{i}", 1)]
            store.append(clicked, [d])
            online.learn(clicked)
    with closing(open_store(tmp_path)) as reopened:
        rebuilt = Policy(explore_share=0.0, tracked=3)
        rebuilt.rebuild(reopened.replay_decisions(), ((e, d) for _, e, d in reopened.replay_decided()))
    assert online.bandit.successes.sum() == rebuilt.bandit.successes.sum() == 6
    assert np.array_equal(rebuilt.bandit.successes, online.bandit.successes)
    # Another click on a list still in the window is no second reward, after the restart as before it.
    rebuilt.learn([click(9, "r5", 2)])
    assert rebuilt.bandit.successes.sum() == 6


def test_a_click_counts_once_and_only_on_an_item_the_list_showed() -> None:
    policy = Policy(bandit=False, fixed_weight=0.5, explore_share=0.0)
    shown = Event("i1", "anonymous", "u", 5, EventType.IMPRESSION, 1, 0)
    others = [Event(f"c{k}", "anonymous", "u", 7, EventType.CLICK, 2, 0) for k in range(5)]  # never shown
    again = [Event(f"d{k}", "anonymous", "u", 5, EventType.CLICK, 1, 0) for k in range(3)]
    policy.learn([shown, shown, *others, *again])
    assert policy.ctr() == {"unpersonalised": 1.0}


def test_feedback_naming_another_users_list_rewards_nothing() -> None:
    policy = Policy(explore_share=0.0)
    policy.decide("alice-list", "alice", 3)
    policy.learn([Event("m1", "alice-list", "mallory", 1, EventType.CLICK, 1, 0)])
    assert policy.bandit.successes.sum() == 0
    policy.learn([Event("a1", "alice-list", "alice", 1, EventType.CLICK, 1, 0)])
    assert policy.bandit.successes.sum() == 1


def test_a_click_counts_under_the_arm_its_impression_was_counted_under() -> None:
    # A replica may learn a list's impressions before the list's decision (logged by the replica that
    # ranked it) and its click after: the click must not count for an arm that never counted the view.
    policy = Policy(bandit=False, fixed_weight=0.5, explore_share=0.0)
    policy.learn([Event(f"i{k}", "elsewhere", "u", k, EventType.IMPRESSION, k + 1, 0) for k in range(4)])
    policy.record([Decision("elsewhere", "u", 0, -1, 0.5, False)])
    policy.learn([Event("c", "elsewhere", "u", 1, EventType.CLICK, 2, 0)])
    assert policy.ctr() == {"unpersonalised": 0.25}


def test_held_undecided_lists_are_the_newest_and_a_single_server_holds_none() -> None:
    def run(hold: int) -> float:
        policy = Policy(explore_share=0.0)
        policy.hold_undecided(hold)
        policy.learn([click(i, f"r{i}", 1) for i in range(3)])  # three lists, no decision yet
        policy.record([Decision(f"r{i}", "u", 0, 2, 1.0, False) for i in range(3)])
        assert policy.bandit is not None
        return float(policy.bandit.successes.sum())

    assert run(2) == 2  # r0 was dropped for r2: its click rewards nothing
    assert run(0) == 0  # not following another replica: decisions come before their feedback


def test_a_long_list_held_for_its_decision_keeps_its_late_click_and_the_hold_is_bounded() -> None:
    policy = Policy(explore_share=0.0)
    policy.hold_undecided(3)  # at most 3 lists and 30 events
    shown = [Event(f"i{p}", "long", "u", p, EventType.IMPRESSION, p, 0) for p in range(1, 26)]
    repeats = [Event(f"j{p}", "long", "u", p, EventType.IMPRESSION, p, 1) for p in range(1, 26)]
    policy.learn([*shown, *repeats, click(99, "long", 3)])  # 25 impressions counted, 25 repeats not
    assert policy._held_events == 26  # the repeats changed nothing and are not held
    policy.record([Decision("long", "u", 0, 2, 1.0, False)])
    assert policy.bandit is not None and policy.bandit.successes.sum() == 1
    assert policy.counts().shown == {"weight 1": 25} and policy.counts().clicked == {"weight 1": 1}
    policy.learn([click(100 + i, "other", 1) for i in range(31)])  # past the events bound
    assert policy._held_events <= 30 and "other" not in policy._held
