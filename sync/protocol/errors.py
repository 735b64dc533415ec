"""The one error both ends raise for a message that must be refused."""


class ProtocolError(ValueError):
    """A message failed a check (signature, freshness, seal, format); the text says which."""
