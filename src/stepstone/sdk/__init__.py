"""What workflow authors import: the entrypoint class, the step interface, the errors."""
