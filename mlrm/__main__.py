"""``python -m mlrm`` is the same as the ``mlrm`` command.

The command line sits above the kernel (it imports the orchestrator and the services),
so it is found the way plug-ins are, through its installed entry point, not imported.
"""

from importlib.metadata import entry_points

(command,) = entry_points(group="console_scripts", name="mlrm")
command.load()(prog_name="mlrm")
