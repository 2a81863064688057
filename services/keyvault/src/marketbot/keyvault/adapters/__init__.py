"""The outside world: PostgreSQL repository, venues, audit writer."""
