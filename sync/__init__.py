"""Store-and-forward sync: box-side agent, wire protocol, central server."""
