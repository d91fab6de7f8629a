"""The workflow-runs API (Strait's): graph workflows, their runs and step runs, and events,
under ``/v1``."""

from stepstone.api.runs.router import install

__all__ = ["install"]
