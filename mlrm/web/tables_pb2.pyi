from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class ProcessRequest(_message.Message):
    __slots__ = ("arrow", "model", "version", "step")
    ARROW_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    arrow: bytes
    model: str
    version: str
    step: str
    def __init__(self, arrow: _Optional[bytes] = ..., model: _Optional[str] = ..., version: _Optional[str] = ..., step: _Optional[str] = ...) -> None: ...

class ProcessResponse(_message.Message):
    __slots__ = ("arrow", "rows")
    ARROW_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    arrow: bytes
    rows: int
    def __init__(self, arrow: _Optional[bytes] = ..., rows: _Optional[int] = ...) -> None: ...

class TrainJob(_message.Message):
    __slots__ = ("config", "arrow", "key")
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    ARROW_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    config: str
    arrow: bytes
    key: str
    def __init__(self, config: _Optional[str] = ..., arrow: _Optional[bytes] = ..., key: _Optional[str] = ...) -> None: ...

class JobRef(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class JobStatus(_message.Message):
    __slots__ = ("id", "status", "error", "model", "version", "result_json")
    ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    RESULT_JSON_FIELD_NUMBER: _ClassVar[int]
    id: str
    status: str
    error: str
    model: str
    version: int
    result_json: str
    def __init__(self, id: _Optional[str] = ..., status: _Optional[str] = ..., error: _Optional[str] = ..., model: _Optional[str] = ..., version: _Optional[int] = ..., result_json: _Optional[str] = ...) -> None: ...
