"""The group-session SFU: rooms, forwarding of encoded media, adaptation."""
