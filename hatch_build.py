"""Ship the bundled task-package sources inside the wheel (``spider demo`` builds them).

Only regular wheels get them: an editable install reads ``task_packages/`` from the checkout,
and a forced include there would put a stray ``spider_core/`` directory in site-packages.
"""

from hatchling.builders.hooks.plugin.interface import BuildHookInterface


class BundleTaskPackages(BuildHookInterface):
    def initialize(self, version: str, build_data: dict) -> None:
        if self.target_name == "wheel" and version == "standard":
            build_data["force_include"]["task_packages"] = "spider_core/_bundled/task_packages"
