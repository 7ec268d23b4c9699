"""The schema boundary: every out-of-range field is refused by name, and items/summaries map back."""

from __future__ import annotations

import pytest

from feedback.events import Event, EventType
from pipeline.types import RankedItem, RankSummary
from protos.ranking.v1 import ranking_pb2
from retrieval.filters import Filters
from server.config import Settings
from server.convert import (
    InvalidArgument,
    item_message,
    parse_event,
    parse_request,
    parse_user,
    summary_message,
)

SETTINGS = Settings()


def request(**fields: object) -> ranking_pb2.RankRequest:
    filters = fields.pop("filters", None)
    req = ranking_pb2.RankRequest(query=str(fields.pop("query", "sofa")), **fields)
    if filters is not None:
        req.filters.CopyFrom(ranking_pb2.Filters(**filters))
    return req


def test_defaults_fill_unset_fields() -> None:
    params = parse_request(request(), SETTINGS)
    assert (params.k, params.mmr_lambda, params.candidates) == (
        SETTINGS.default_k, SETTINGS.default_mmr_lambda, SETTINGS.default_candidates)
    assert params.filters is None and len(params.request_id) == 32  # one is made when none is given
    assert parse_request(request(request_id="r1"), SETTINGS).request_id == "r1"
    # candidates default to at least k.
    assert parse_request(request(k=150), SETTINGS).candidates == 150


@pytest.mark.parametrize(("fields", "field"), [
    ({"query": "  "}, "query"),
    ({"query": "x" * (SETTINGS.max_query_chars + 1)}, "query"),
    ({"k": 0}, "k"),
    ({"k": SETTINGS.max_k + 1}, "k"),
    ({"mmr_lambda": 1.5}, "mmr_lambda"),
    ({"mmr_lambda": float("nan")}, "mmr_lambda"),
    ({"k": 20, "candidates": 10}, "candidates"),
    ({"candidates": SETTINGS.max_candidates + 1}, "candidates"),
    ({"filters": {"min_price": -1.0}}, "filters.min_price"),
    ({"filters": {"min_price": 50.0, "max_price": 10.0}}, "filters.min_price"),
    ({"filters": {"category": "x" * 257}}, "filters.category"),  # echoed in trailers: bounded
    ({"request_id": "r" * 129}, "request_id"),  # feedback could not name it (FeedbackEvent.request_id)
])
def test_bad_fields_are_named(fields: dict, field: str) -> None:
    with pytest.raises(InvalidArgument) as err:
        parse_request(request(**fields), SETTINGS)
    assert err.value.field == field and str(err.value).startswith(f"{field}: ")


def test_filters_parse_and_blank_means_none() -> None:
    wanted = {"category": " Sofas ", "max_price": 300.0, "in_stock_only": True}
    params = parse_request(request(filters=wanted), SETTINGS)
    assert params.filters == Filters(category="Sofas", max_price=300.0, in_stock_only=True)
    assert parse_request(request(filters={"category": "  "}), SETTINGS).filters is None


def test_messages_carry_every_field() -> None:
    item = RankedItem(rank=2, item_id=7, title="t", category="c", price=9.5, score=0.75,
                      retrieval_score=0.5, rerank_score=3.0, redundancy_penalty=0.25)
    assert item_message(item).item == ranking_pb2.RankedItem(
        rank=2, item_id=7, title="t", category="c", price=9.5, score=0.75, retrieval_score=0.5,
        rerank_score=3.0, redundancy_penalty=0.25)
    summary = RankSummary(request_id="r", timings_ms={"embed": 1.0, "rerank": 4.0, "fusion": 0.5},
                          candidates_retrieved=100, degraded=True, degraded_reason="reranker_unavailable")
    msg = summary_message(summary, 2.0, cache_hit=True).summary
    assert (msg.timings.embed_ms, msg.timings.rerank_ms, msg.timings.fusion_ms, msg.timings.queue_ms) == (
        1.0, 4.0, 0.5, 2.0)
    assert msg.degraded and msg.degraded_reason == "reranker_unavailable" and msg.cache_hit


def feedback_event(**fields: object) -> ranking_pb2.FeedbackEvent:
    base: dict[str, object] = {"event_id": "e1", "item_id": 3, "type": ranking_pb2.EVENT_TYPE_CLICK,
                               "user_id": " u1 ", "position": 2, "request_id": "r"}
    return ranking_pb2.FeedbackEvent(**{**base, **fields})


def test_feedback_events_parse_and_bad_ones_name_their_field() -> None:
    assert parse_event(feedback_event(), 10, now_ms=77) == Event("e1", "r", "u1", 3, EventType.CLICK, 2, 77)
    assert parse_event(feedback_event(timestamp_ms=5), 10, now_ms=77).timestamp_ms == 5
    ahead = 77 + 3600 * 1000  # an hour of client clock skew is taken as sent
    assert parse_event(feedback_event(timestamp_ms=ahead), 10, now_ms=77).timestamp_ms == ahead
    for fields, field, text in [
        ({"event_id": ""}, "event_id", "required"),
        ({"event_id": "  "}, "event_id", "required"),
        ({"event_id": "x" * 129}, "event_id", "longer"),
        ({"type": ranking_pb2.EVENT_TYPE_UNSPECIFIED}, "type", "must be set"),
        ({"type": 9}, "type", "unknown event type 9"),
        ({"item_id": 10}, "item_id", "unknown item 10"),
        ({"item_id": -1}, "item_id", "unknown item -1"),
        ({"timestamp_ms": -5}, "timestamp_ms", "negative"),
        ({"timestamp_ms": 1_700_000_000_000_000}, "timestamp_ms", "a day ahead"),  # µs sent as ms
        ({"user_id": "u" * 200}, "user_id", "longer"),
    ]:
        with pytest.raises(InvalidArgument, match=text) as info:
            parse_event(feedback_event(**fields), 10, now_ms=0)
        assert info.value.field == field and str(info.value).startswith(f"{field}: ")


def test_user_context_parses_and_bad_recent_items_are_refused() -> None:
    assert parse_user(request(), 10) == ("", ())
    req = request(user=ranking_pb2.UserContext(user_id="u9", recent_item_ids=[4, 2]))
    assert parse_user(req, 10) == ("u9", (4, 2))
    with pytest.raises(InvalidArgument, match=r"user\.recent_item_ids: unknown item 10"):
        parse_user(request(user=ranking_pb2.UserContext(recent_item_ids=[1, 10])), 10)
    with pytest.raises(InvalidArgument, match=r"user\.recent_item_ids: has 101 items"):
        parse_user(request(user=ranking_pb2.UserContext(recent_item_ids=[1] * 101)), 10)
    with pytest.raises(InvalidArgument, match=r"user\.user_id"):
        parse_user(request(user=ranking_pb2.UserContext(user_id="u" * 129)), 10)


def test_explanations_and_personalisation_reach_the_messages() -> None:
    item = RankedItem(rank=1, item_id=3, title="t", category="c", price=1.0, score=0.5, retrieval_score=0.1,
                      rerank_score=0.2, redundancy_penalty=0.0,
                      explanation=(("relevance", 0.4), ("personal", 0.1), ("redundancy", -0.0)))
    msg = item_message(item).item
    assert [(c.name, round(c.value, 6)) for c in msg.explanation] == [
        ("relevance", 0.4), ("personal", 0.1), ("redundancy", 0.0)]
    summary = summary_message(RankSummary("r", personalized=True, profile_version=7), 0.0).summary
    assert summary.personalized and summary.profile_version == 7


def test_an_arm_sets_defaults_and_the_request_wins() -> None:
    from server.convert import with_arm

    arm = {"mmr_lambda": 0.4, "candidates": 5}
    params = with_arm(parse_request(request(k=10), SETTINGS), request(k=10), arm, SETTINGS)
    assert params.mmr_lambda == 0.4 and params.candidates == 10  # never fewer candidates than k
    explicit = request(k=10, mmr_lambda=0.9, candidates=300)
    params = with_arm(parse_request(explicit, SETTINGS), explicit, arm, SETTINGS)
    assert (params.mmr_lambda, params.candidates) == (pytest.approx(0.9), 300)
    plain = parse_request(request(request_id="r"), SETTINGS)
    assert with_arm(plain, request(request_id="r"), {}, SETTINGS) is plain  # no arm: nothing changes


@pytest.mark.parametrize(("limits", "message"), [
    ({"default_k": 500, "max_k": 200}, "default_k must not exceed max_k"),
    ({"default_k": 150, "max_candidates": 120, "default_candidates": 100}, "default_k must not exceed max_c"),
])
def test_a_default_k_the_limits_refuse_is_a_settings_error(limits: dict, message: str) -> None:
    # Else every request that leaves k unset would be refused, naming a field its client never set.
    with pytest.raises(ValueError, match=message):
        Settings(**limits)
