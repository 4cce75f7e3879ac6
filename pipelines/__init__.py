"""The Dagster code location: definitions, jobs, schedules and the resources they get."""
