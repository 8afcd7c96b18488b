from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Label(_message.Message):
    __slots__ = ("string_value", "double_value", "int64_value", "bool_value")
    STRING_VALUE_FIELD_NUMBER: _ClassVar[int]
    DOUBLE_VALUE_FIELD_NUMBER: _ClassVar[int]
    INT64_VALUE_FIELD_NUMBER: _ClassVar[int]
    BOOL_VALUE_FIELD_NUMBER: _ClassVar[int]
    string_value: str
    double_value: float
    int64_value: int
    bool_value: bool
    def __init__(self, string_value: _Optional[str] = ..., double_value: _Optional[float] = ..., int64_value: _Optional[int] = ..., bool_value: _Optional[bool] = ...) -> None: ...

class FeedbackItem(_message.Message):
    __slots__ = ("request_id", "row", "row_id", "label", "labels")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    ROW_FIELD_NUMBER: _ClassVar[int]
    ROW_ID_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    row: int
    row_id: str
    label: Label
    labels: _containers.RepeatedCompositeFieldContainer[Label]
    def __init__(self, request_id: _Optional[str] = ..., row: _Optional[int] = ..., row_id: _Optional[str] = ..., label: _Optional[_Union[Label, _Mapping]] = ..., labels: _Optional[_Iterable[_Union[Label, _Mapping]]] = ...) -> None: ...

class FeedbackRequest(_message.Message):
    __slots__ = ("model_name", "items")
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    model_name: str
    items: _containers.RepeatedCompositeFieldContainer[FeedbackItem]
    def __init__(self, model_name: _Optional[str] = ..., items: _Optional[_Iterable[_Union[FeedbackItem, _Mapping]]] = ...) -> None: ...

class FeedbackResponse(_message.Message):
    __slots__ = ("model_name", "accepted")
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    model_name: str
    accepted: int
    def __init__(self, model_name: _Optional[str] = ..., accepted: _Optional[int] = ...) -> None: ...

class ChecksRequest(_message.Message):
    __slots__ = ("model_name", "limit")
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    model_name: str
    limit: int
    def __init__(self, model_name: _Optional[str] = ..., limit: _Optional[int] = ...) -> None: ...

class Check(_message.Message):
    __slots__ = ("model", "version", "detector", "on", "target", "statistic", "p_value", "threshold", "drifted", "samples", "window_start", "window_end", "at", "reason", "alias")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    DETECTOR_FIELD_NUMBER: _ClassVar[int]
    ON_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    STATISTIC_FIELD_NUMBER: _ClassVar[int]
    P_VALUE_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    DRIFTED_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_FIELD_NUMBER: _ClassVar[int]
    WINDOW_START_FIELD_NUMBER: _ClassVar[int]
    WINDOW_END_FIELD_NUMBER: _ClassVar[int]
    AT_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    ALIAS_FIELD_NUMBER: _ClassVar[int]
    model: str
    version: int
    detector: str
    on: str
    target: str
    statistic: float
    p_value: float
    threshold: float
    drifted: bool
    samples: int
    window_start: float
    window_end: float
    at: float
    reason: str
    alias: str
    def __init__(self, model: _Optional[str] = ..., version: _Optional[int] = ..., detector: _Optional[str] = ..., on: _Optional[str] = ..., target: _Optional[str] = ..., statistic: _Optional[float] = ..., p_value: _Optional[float] = ..., threshold: _Optional[float] = ..., drifted: _Optional[bool] = ..., samples: _Optional[int] = ..., window_start: _Optional[float] = ..., window_end: _Optional[float] = ..., at: _Optional[float] = ..., reason: _Optional[str] = ..., alias: _Optional[str] = ...) -> None: ...

class ChecksResponse(_message.Message):
    __slots__ = ("checks",)
    CHECKS_FIELD_NUMBER: _ClassVar[int]
    checks: _containers.RepeatedCompositeFieldContainer[Check]
    def __init__(self, checks: _Optional[_Iterable[_Union[Check, _Mapping]]] = ...) -> None: ...
