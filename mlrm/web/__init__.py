"""What every network-facing server of mlrm shares: running REST (ASGI on uvicorn) and gRPC side by side.

Services and the orchestrator build their own applications (a Starlette app, a gRPC servicer) and
hand them to :class:`~.servers.ApiServers`; listening, ports, start and stop live here once.
"""
