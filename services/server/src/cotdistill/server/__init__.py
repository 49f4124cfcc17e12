"""cotdistill model server: serves a student over HTTP (OpenAI-compatible and /v1/reason)."""
