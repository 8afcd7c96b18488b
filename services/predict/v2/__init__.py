"""The Open Inference Protocol (KServe "V2") for the predict service, over REST and gRPC.

Both servers are thin adapters: they decode their transport's request into :class:`~.codec.Tensor`\\ s,
call :class:`~.codec.V2` (which calls the one :class:`~services.predict.dataplane.DataPlane`), and
encode the answer. Decoding rules, model lookup, validation and errors live once, in :mod:`.codec`;
each error answers with its own ``http_status`` / ``grpc_status`` (``mlrm/errors.py``).
"""
