from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

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
    __slots__ = ("query", "k", "mmr_lambda", "candidates", "filters", "request_id", "bypass_cache")
    QUERY_FIELD_NUMBER: _ClassVar[int]
    K_FIELD_NUMBER: _ClassVar[int]
    MMR_LAMBDA_FIELD_NUMBER: _ClassVar[int]
    CANDIDATES_FIELD_NUMBER: _ClassVar[int]
    FILTERS_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    BYPASS_CACHE_FIELD_NUMBER: _ClassVar[int]
    query: str
    k: int
    mmr_lambda: float
    candidates: int
    filters: Filters
    request_id: str
    bypass_cache: bool
    def __init__(self, query: _Optional[str] = ..., k: _Optional[int] = ..., mmr_lambda: _Optional[float] = ..., candidates: _Optional[int] = ..., filters: _Optional[_Union[Filters, _Mapping]] = ..., request_id: _Optional[str] = ..., bypass_cache: _Optional[bool] = ...) -> None: ...

class RankedItem(_message.Message):
    __slots__ = ("rank", "item_id", "title", "category", "price", "score", "retrieval_score", "rerank_score", "redundancy_penalty")
    RANK_FIELD_NUMBER: _ClassVar[int]
    ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    PRICE_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    RETRIEVAL_SCORE_FIELD_NUMBER: _ClassVar[int]
    RERANK_SCORE_FIELD_NUMBER: _ClassVar[int]
    REDUNDANCY_PENALTY_FIELD_NUMBER: _ClassVar[int]
    rank: int
    item_id: int
    title: str
    category: str
    price: float
    score: float
    retrieval_score: float
    rerank_score: float
    redundancy_penalty: float
    def __init__(self, rank: _Optional[int] = ..., item_id: _Optional[int] = ..., title: _Optional[str] = ..., category: _Optional[str] = ..., price: _Optional[float] = ..., score: _Optional[float] = ..., retrieval_score: _Optional[float] = ..., rerank_score: _Optional[float] = ..., redundancy_penalty: _Optional[float] = ...) -> None: ...

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
    __slots__ = ("request_id", "timings", "candidates_retrieved", "candidates_reranked", "items_returned", "model_version", "index_version", "degraded", "degraded_reason", "mmr_lambda", "cache_hit")
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
    def __init__(self, request_id: _Optional[str] = ..., timings: _Optional[_Union[StageTimings, _Mapping]] = ..., candidates_retrieved: _Optional[int] = ..., candidates_reranked: _Optional[int] = ..., items_returned: _Optional[int] = ..., model_version: _Optional[str] = ..., index_version: _Optional[str] = ..., degraded: _Optional[bool] = ..., degraded_reason: _Optional[str] = ..., mmr_lambda: _Optional[float] = ..., cache_hit: _Optional[bool] = ...) -> None: ...

class RankResponse(_message.Message):
    __slots__ = ("item", "summary")
    ITEM_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    item: RankedItem
    summary: Summary
    def __init__(self, item: _Optional[_Union[RankedItem, _Mapping]] = ..., summary: _Optional[_Union[Summary, _Mapping]] = ...) -> None: ...

class InfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class InfoResponse(_message.Message):
    __slots__ = ("model_version", "index_version", "index_factory", "items", "default_mmr_lambda", "default_k", "default_candidates", "categories", "server_version")
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    INDEX_VERSION_FIELD_NUMBER: _ClassVar[int]
    INDEX_FACTORY_FIELD_NUMBER: _ClassVar[int]
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_MMR_LAMBDA_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_K_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_CANDIDATES_FIELD_NUMBER: _ClassVar[int]
    CATEGORIES_FIELD_NUMBER: _ClassVar[int]
    SERVER_VERSION_FIELD_NUMBER: _ClassVar[int]
    model_version: str
    index_version: str
    index_factory: str
    items: int
    default_mmr_lambda: float
    default_k: int
    default_candidates: int
    categories: _containers.RepeatedScalarFieldContainer[str]
    server_version: str
    def __init__(self, model_version: _Optional[str] = ..., index_version: _Optional[str] = ..., index_factory: _Optional[str] = ..., items: _Optional[int] = ..., default_mmr_lambda: _Optional[float] = ..., default_k: _Optional[int] = ..., default_candidates: _Optional[int] = ..., categories: _Optional[_Iterable[str]] = ..., server_version: _Optional[str] = ...) -> None: ...
