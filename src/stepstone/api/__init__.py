"""HTTP edge: the app factory, and one router package per API family."""

from stepstone.api.app import create_app

__all__ = ["create_app"]
