"""mlrm: reusable ML microservices configured only by YAML.

This package is the shared kernel every service and the orchestrator import:
config models and loading, the bus, the volume, the model registry, the step
registry and the CLI.
"""

__version__ = "0.1.0"
