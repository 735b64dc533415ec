"""The box's sync agent: drains the outbox to the centre, pulls signed changes back."""
