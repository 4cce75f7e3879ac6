"""The Dagster assets: raw chain tables, core and analytics tables, events and the serving layer."""
