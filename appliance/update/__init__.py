"""Application-level A/B updates: signed bundles, release directories with their own venv,
an atomic `current` switch, a health-gated commit and automatic rollback (docs/updates.md)."""
