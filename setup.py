"""Package discovery that pyproject.toml cannot express (the metadata itself lives there).

The checkout keeps the top-level folders the design fixes, but installs them under names of
ours, so no other distribution's top-level ``adapters`` can collide with the built-in plugins:

    gateway/   -> gateway            the core
    adapters/  -> gateway_adapters   the built-in plugins (entry points: group gateway.adapters)
    mappings/  -> gateway_mappings   the shipped mappings and code tables (data; gateway.shipped finds them)

Discovery is dynamic, so a new subpackage or data folder (a migration folder, console assets)
ships without editing a list.
"""

from setuptools import find_namespace_packages, setup

RENAMED = {"gateway_adapters": "adapters", "gateway_mappings": "mappings"}
SKIP = ["*__pycache__*", "*.egg-info*"]


def packages_in(folder: str, name: str) -> list[str]:
    return [name] + [f"{name}.{sub}" for sub in find_namespace_packages(folder, exclude=SKIP)]


setup(
    packages=find_namespace_packages(include=["gateway", "gateway.*"], exclude=SKIP)
    + [pkg for name, folder in RENAMED.items() for pkg in packages_in(folder, name)],
    package_dir=RENAMED,
)
