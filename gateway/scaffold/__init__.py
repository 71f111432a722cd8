"""Adapter SDK tooling: ``gateway adapters list`` and ``gateway adapters new NAME`` (templates in ``templates/``)."""

from gateway.scaffold.commands import ProjectNames, ScaffoldError, generate

__all__ = ["ProjectNames", "ScaffoldError", "generate"]
