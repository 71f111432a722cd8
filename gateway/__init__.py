"""The gateway core: schema, mappings, store, pipeline, audit, supervision, API."""

from gateway import legacy_imports as _legacy_imports

# Plugins written against the built-in adapters' old import name (adapters.*) keep loading.
_legacy_imports.install()
