"""The gateway core: schema, mappings, store, pipeline, audit, supervision, API."""
