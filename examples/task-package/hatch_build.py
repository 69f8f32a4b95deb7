"""hatchling build hook of this project: spider-core's, which compiles the C task package into
the wheel and tags it py3-none-linux_<arch> (options in pyproject.toml)."""

from spider_core.wheel import TaskPackageHook

__all__ = ["TaskPackageHook"]
