"""Built-in sinks (``csv``, ``jsonl``, ``parquet``); importing this package registers them."""

from services.predict.sinks.base import FileSink
from services.predict.sinks.files import CsvSink, JsonlSink, ParquetSink

__all__ = ["CsvSink", "FileSink", "JsonlSink", "ParquetSink"]
