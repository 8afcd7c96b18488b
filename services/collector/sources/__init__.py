"""Built-in collector sources; importing this package registers every one of them.

===========  ==========================================================
``csv``      delimited text, streamed by pyarrow (:mod:`.delimited`)
``jsonl``    one JSON object per line (:mod:`.jsonl`)
``parquet``  Parquet, one row group at a time (:mod:`.parquet`)
``records``  rows written inline in the config (:mod:`.records`)
``http``     GET a URL returning JSON, JSON Lines or CSV (:mod:`.http`)
===========  ==========================================================
"""

from services.collector.sources.base import FileSource, TabularSource
from services.collector.sources.delimited import CsvSource
from services.collector.sources.http import HttpSource
from services.collector.sources.jsonl import JsonlSource
from services.collector.sources.parquet import ParquetSource
from services.collector.sources.records import RecordsSource

__all__ = ["CsvSource", "FileSource", "HttpSource", "JsonlSource", "ParquetSource", "RecordsSource", "TabularSource"]
