"""Process-level plumbing: embedded PostgreSQL/Redis for development and tests, and the launcher."""
