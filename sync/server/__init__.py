"""The central server: device registry, record store, signed receipts, down-sync changes."""
