"""The control plane over REST and gRPC: workflows (submit, runs, cancel, results, events), the model
registry and deployments. One :class:`~.control.ControlPlane` holds the logic; ``rest`` and ``grpc``
are thin adapters; ``serve`` runs both with :class:`mlrm.web.servers.ApiServers`."""
