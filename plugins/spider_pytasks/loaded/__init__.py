"""Python task packages imported from a package directory live here, as
``spider_pytasks.loaded.<name>``, so their modules never collide with installed ones."""
