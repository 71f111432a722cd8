"""Built-in adapter plugins, each registered under the gateway.adapters entry-point group."""
