"""The analytics errors a user can cause, importable without loading scikit-learn (the CLI
catches them for every command)."""


class ModelError(Exception):
    """A model file that cannot be used: unreadable, tampered with, or for other signals."""
