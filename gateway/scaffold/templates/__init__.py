"""Text templates of ``gateway adapters new`` (``*.tmpl``, filled by ``gateway.scaffold.commands.render``)."""
