"""Persistence: one ``Store`` protocol, one SQLAlchemy Core implementation, per-dialect hooks."""

from stepstone.storage.base import NewInstance, Store
from stepstone.storage.factory import open_store

__all__ = ["NewInstance", "Store", "open_store"]
