"""Encrypted record store on peewee over stdlib sqlite3.

`open_store(settings)` gives a `Store`: its models (`appliance.store.models`) encrypt clinical
fields with AES-256-GCM and enqueue every write in the outbox (`appliance.store.outbox`).
"""

from appliance.store.fields import IntegrityError
from appliance.store.store import Store, open_store

__all__ = ["IntegrityError", "Store", "open_store"]
