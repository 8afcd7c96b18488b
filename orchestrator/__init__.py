"""The orchestrator: compiles workflows into routes, starts and follows runs; importing it registers
its config kinds (``Workflow``, ``LocalDeployment``, ``RetrainPolicy``)."""

from orchestrator import compile, local, retrain  # noqa: F401 - registers the config kinds
