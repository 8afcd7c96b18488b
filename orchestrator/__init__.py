"""The orchestrator: compiles workflows into routes, starts and follows runs; importing it registers
its config kinds (``Workflow``, ``LocalDeployment``)."""

from orchestrator import compile, local  # noqa: F401 - registers the config kinds
