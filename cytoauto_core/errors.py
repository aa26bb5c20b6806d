"""Exceptions the app shows to users as one plain sentence."""


class CytoInputError(ValueError):
    """A user's file or request cannot be used; the message is one sentence for a biologist."""
