"""Application services: what the CLI and every API family do, in one place."""

from stepstone.engine.engine import DEFAULT_TENANT, Engine, InstanceView

__all__ = ["DEFAULT_TENANT", "Engine", "InstanceView"]
