"""The ``stepstone`` command."""
