"""The shipped mappings and code tables, installed as the data package ``gateway_mappings``.

Nothing here is code: find the folder with ``gateway.shipped.shipped_mappings()``.
"""
