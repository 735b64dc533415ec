"""The errors both ends raise for a message that must be refused."""


class ProtocolError(ValueError):
    """A message failed a check (signature, freshness, seal, format); the text says which."""


class TooLarge(ProtocolError):
    """A message is (or inflates to) more than its size bound; the text says the bound."""
