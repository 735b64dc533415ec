"""Encrypted record store on peewee over stdlib sqlite3."""
