"""Clinical instruments: PHQ-9 and GAD-7 definitions, validation, scoring and severity bands."""
