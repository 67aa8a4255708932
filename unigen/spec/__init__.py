"""The spec language: YAML with positions, the pydantic models, overrides, the JSON Schema."""
