from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class EventType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EVENT_TYPE_UNSPECIFIED: _ClassVar[EventType]
    EVENT_TYPE_IMPRESSION: _ClassVar[EventType]
    EVENT_TYPE_CLICK: _ClassVar[EventType]
    EVENT_TYPE_ADD_TO_CART: _ClassVar[EventType]
    EVENT_TYPE_PURCHASE: _ClassVar[EventType]
EVENT_TYPE_UNSPECIFIED: EventType
EVENT_TYPE_IMPRESSION: EventType
EVENT_TYPE_CLICK: EventType
EVENT_TYPE_ADD_TO_CART: EventType
EVENT_TYPE_PURCHASE: EventType

class UserContext(_message.Message):
    __slots__ = ("user_id", "session_id", "recent_item_ids", "locale", "device")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    RECENT_ITEM_IDS_FIELD_NUMBER: _ClassVar[int]
    LOCALE_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    session_id: str
    recent_item_ids: _containers.RepeatedScalarFieldContainer[int]
    locale: str
    device: str
    def __init__(self, user_id: _Optional[str] = ..., session_id: _Optional[str] = ..., recent_item_ids: _Optional[_Iterable[int]] = ..., locale: _Optional[str] = ..., device: _Optional[str] = ...) -> None: ...

class Filters(_message.Message):
    __slots__ = ("category", "min_price", "max_price", "in_stock_only")
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    MIN_PRICE_FIELD_NUMBER: _ClassVar[int]
    MAX_PRICE_FIELD_NUMBER: _ClassVar[int]
    IN_STOCK_ONLY_FIELD_NUMBER: _ClassVar[int]
    category: str
    min_price: float
    max_price: float
    in_stock_only: bool
    def __init__(self, category: _Optional[str] = ..., min_price: _Optional[float] = ..., max_price: _Optional[float] = ..., in_stock_only: _Optional[bool] = ...) -> None: ...

class RankRequest(_message.Message):
    __slots__ = ("query", "k", "mmr_lambda", "candidates", "filters", "request_id", "bypass_cache", "user")
    QUERY_FIELD_NUMBER: _ClassVar[int]
    K_FIELD_NUMBER: _ClassVar[int]
    MMR_LAMBDA_FIELD_NUMBER: _ClassVar[int]
    CANDIDATES_FIELD_NUMBER: _ClassVar[int]
    FILTERS_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    BYPASS_CACHE_FIELD_NUMBER: _ClassVar[int]
    USER_FIELD_NUMBER: _ClassVar[int]
    query: str
    k: int
    mmr_lambda: float
    candidates: int
    filters: Filters
    request_id: str
    bypass_cache: bool
    user: UserContext
    def __init__(self, query: _Optional[str] = ..., k: _Optional[int] = ..., mmr_lambda: _Optional[float] = ..., candidates: _Optional[int] = ..., filters: _Optional[_Union[Filters, _Mapping]] = ..., request_id: _Optional[str] = ..., bypass_cache: _Optional[bool] = ..., user: _Optional[_Union[UserContext, _Mapping]] = ...) -> None: ...

class ScoreComponent(_message.Message):
    __slots__ = ("name", "value")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    name: str
    value: float
    def __init__(self, name: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...

class RankedItem(_message.Message):
    __slots__ = ("rank", "item_id", "title", "category", "price", "score", "retrieval_score", "rerank_score", "redundancy_penalty", "explanation")
    RANK_FIELD_NUMBER: _ClassVar[int]
    ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    PRICE_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    RETRIEVAL_SCORE_FIELD_NUMBER: _ClassVar[int]
    RERANK_SCORE_FIELD_NUMBER: _ClassVar[int]
    REDUNDANCY_PENALTY_FIELD_NUMBER: _ClassVar[int]
    EXPLANATION_FIELD_NUMBER: _ClassVar[int]
    rank: int
    item_id: int
    title: str
    category: str
    price: float
    score: float
    retrieval_score: float
    rerank_score: float
    redundancy_penalty: float
    explanation: _containers.RepeatedCompositeFieldContainer[ScoreComponent]
    def __init__(self, rank: _Optional[int] = ..., item_id: _Optional[int] = ..., title: _Optional[str] = ..., category: _Optional[str] = ..., price: _Optional[float] = ..., score: _Optional[float] = ..., retrieval_score: _Optional[float] = ..., rerank_score: _Optional[float] = ..., redundancy_penalty: _Optional[float] = ..., explanation: _Optional[_Iterable[_Union[ScoreComponent, _Mapping]]] = ...) -> None: ...

class StageTimings(_message.Message):
    __slots__ = ("embed_ms", "retrieve_ms", "tokenize_ms", "rerank_ms", "mmr_ms", "total_ms", "queue_ms", "send_ms", "fusion_ms")
    EMBED_MS_FIELD_NUMBER: _ClassVar[int]
    RETRIEVE_MS_FIELD_NUMBER: _ClassVar[int]
    TOKENIZE_MS_FIELD_NUMBER: _ClassVar[int]
    RERANK_MS_FIELD_NUMBER: _ClassVar[int]
    MMR_MS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_MS_FIELD_NUMBER: _ClassVar[int]
    QUEUE_MS_FIELD_NUMBER: _ClassVar[int]
    SEND_MS_FIELD_NUMBER: _ClassVar[int]
    FUSION_MS_FIELD_NUMBER: _ClassVar[int]
    embed_ms: float
    retrieve_ms: float
    tokenize_ms: float
    rerank_ms: float
    mmr_ms: float
    total_ms: float
    queue_ms: float
    send_ms: float
    fusion_ms: float
    def __init__(self, embed_ms: _Optional[float] = ..., retrieve_ms: _Optional[float] = ..., tokenize_ms: _Optional[float] = ..., rerank_ms: _Optional[float] = ..., mmr_ms: _Optional[float] = ..., total_ms: _Optional[float] = ..., queue_ms: _Optional[float] = ..., send_ms: _Optional[float] = ..., fusion_ms: _Optional[float] = ...) -> None: ...

class Summary(_message.Message):
    __slots__ = ("request_id", "timings", "candidates_retrieved", "candidates_reranked", "items_returned", "model_version", "index_version", "degraded", "degraded_reason", "mmr_lambda", "cache_hit", "personalized", "profile_version", "explored", "variant")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    TIMINGS_FIELD_NUMBER: _ClassVar[int]
    CANDIDATES_RETRIEVED_FIELD_NUMBER: _ClassVar[int]
    CANDIDATES_RERANKED_FIELD_NUMBER: _ClassVar[int]
    ITEMS_RETURNED_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    INDEX_VERSION_FIELD_NUMBER: _ClassVar[int]
    DEGRADED_FIELD_NUMBER: _ClassVar[int]
    DEGRADED_REASON_FIELD_NUMBER: _ClassVar[int]
    MMR_LAMBDA_FIELD_NUMBER: _ClassVar[int]
    CACHE_HIT_FIELD_NUMBER: _ClassVar[int]
    PERSONALIZED_FIELD_NUMBER: _ClassVar[int]
    PROFILE_VERSION_FIELD_NUMBER: _ClassVar[int]
    EXPLORED_FIELD_NUMBER: _ClassVar[int]
    VARIANT_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    timings: StageTimings
    candidates_retrieved: int
    candidates_reranked: int
    items_returned: int
    model_version: str
    index_version: str
    degraded: bool
    degraded_reason: str
    mmr_lambda: float
    cache_hit: bool
    personalized: bool
    profile_version: int
    explored: bool
    variant: str
    def __init__(self, request_id: _Optional[str] = ..., timings: _Optional[_Union[StageTimings, _Mapping]] = ..., candidates_retrieved: _Optional[int] = ..., candidates_reranked: _Optional[int] = ..., items_returned: _Optional[int] = ..., model_version: _Optional[str] = ..., index_version: _Optional[str] = ..., degraded: _Optional[bool] = ..., degraded_reason: _Optional[str] = ..., mmr_lambda: _Optional[float] = ..., cache_hit: _Optional[bool] = ..., personalized: _Optional[bool] = ..., profile_version: _Optional[int] = ..., explored: _Optional[bool] = ..., variant: _Optional[str] = ...) -> None: ...

class RankResponse(_message.Message):
    __slots__ = ("item", "summary")
    ITEM_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    item: RankedItem
    summary: Summary
    def __init__(self, item: _Optional[_Union[RankedItem, _Mapping]] = ..., summary: _Optional[_Union[Summary, _Mapping]] = ...) -> None: ...

class FeedbackEvent(_message.Message):
    __slots__ = ("event_id", "request_id", "user_id", "item_id", "type", "position", "timestamp_ms")
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    POSITION_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_MS_FIELD_NUMBER: _ClassVar[int]
    event_id: str
    request_id: str
    user_id: str
    item_id: int
    type: EventType
    position: int
    timestamp_ms: int
    def __init__(self, event_id: _Optional[str] = ..., request_id: _Optional[str] = ..., user_id: _Optional[str] = ..., item_id: _Optional[int] = ..., type: _Optional[_Union[EventType, str]] = ..., position: _Optional[int] = ..., timestamp_ms: _Optional[int] = ...) -> None: ...

class FeedbackAck(_message.Message):
    __slots__ = ("accepted", "duplicates", "rejected")
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    DUPLICATES_FIELD_NUMBER: _ClassVar[int]
    REJECTED_FIELD_NUMBER: _ClassVar[int]
    accepted: int
    duplicates: int
    rejected: int
    def __init__(self, accepted: _Optional[int] = ..., duplicates: _Optional[int] = ..., rejected: _Optional[int] = ...) -> None: ...

class InfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class InfoResponse(_message.Message):
    __slots__ = ("model_version", "index_version", "index_factory", "items", "default_mmr_lambda", "default_k", "default_candidates", "categories", "server_version", "personalization", "model_versions")
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    INDEX_VERSION_FIELD_NUMBER: _ClassVar[int]
    INDEX_FACTORY_FIELD_NUMBER: _ClassVar[int]
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_MMR_LAMBDA_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_K_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_CANDIDATES_FIELD_NUMBER: _ClassVar[int]
    CATEGORIES_FIELD_NUMBER: _ClassVar[int]
    SERVER_VERSION_FIELD_NUMBER: _ClassVar[int]
    PERSONALIZATION_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSIONS_FIELD_NUMBER: _ClassVar[int]
    model_version: str
    index_version: str
    index_factory: str
    items: int
    default_mmr_lambda: float
    default_k: int
    default_candidates: int
    categories: _containers.RepeatedScalarFieldContainer[str]
    server_version: str
    personalization: str
    model_versions: _containers.RepeatedCompositeFieldContainer[ModelVersion]
    def __init__(self, model_version: _Optional[str] = ..., index_version: _Optional[str] = ..., index_factory: _Optional[str] = ..., items: _Optional[int] = ..., default_mmr_lambda: _Optional[float] = ..., default_k: _Optional[int] = ..., default_candidates: _Optional[int] = ..., categories: _Optional[_Iterable[str]] = ..., server_version: _Optional[str] = ..., personalization: _Optional[str] = ..., model_versions: _Optional[_Iterable[_Union[ModelVersion, _Mapping]]] = ...) -> None: ...

class ModelVersion(_message.Message):
    __slots__ = ("version", "state", "is_default", "sha256")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    IS_DEFAULT_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    version: str
    state: str
    is_default: bool
    sha256: str
    def __init__(self, version: _Optional[str] = ..., state: _Optional[str] = ..., is_default: _Optional[bool] = ..., sha256: _Optional[str] = ...) -> None: ...
