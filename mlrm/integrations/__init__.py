"""Integrations: mlrm speaking other systems' protocols, outside the kernel's core.

An integration lets mlrm work with software that was not written for it, on that
software's terms: ``nameko`` (:mod:`mlrm.integrations.nameko`) speaks nameko's RPC wire
protocol, so nameko clients can call mlrm and workflows can call nameko services.

The core (config, bus, volume, registry, runtime) never imports an integration: the
services and the CLI do, where a config or a flag asks for one. An integration may use
the core (the nameko one reaches the broker through :mod:`mlrm.amqp`, like the bus), and
it does not need the other system installed unless it says so.
"""
