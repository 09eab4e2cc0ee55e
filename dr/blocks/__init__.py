"""The typed blocks DR runbooks are composed of, one module per concern: the checks before a
failover (`checks`), the registry database's promotion on each cloud (`registry`), GPU capacity and
the runtime's replicas (`capacity`), the serving runtime's pin and probes (`serving`), routing
(`routing`) and a person's approval (`approval`). `mlfleet.dr.runbooks` composes them from the
environment: the right blocks for the clouds of the source and the target."""
