"""events/*: the PostgreSQL events that feed the trigger engine."""
