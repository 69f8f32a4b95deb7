"""The host's side of the plugins: the manager, its specs, the default plugins, entry points,
blocking and tracing. The pool, the executor and the commands import it; a plugin author never
does (:mod:`spider_core.plugin` is theirs), and ``spider_core`` re-exports
:func:`get_plugin_manager`, :class:`PluginSettings` and :class:`PluginError` for embedders and
tests.

The core reaches plugins only through this manager and its hooks: the default plugins are
named in :data:`DEFAULT_PLUGINS` and imported by name here, never by a core module.

A manager remembers what it registered by name (:class:`Registration`, in
``settings.plugins``), so a child process given those settings (the executor: the pool passes
them in ``SPIDER_PLUGINS``) registers the same plugins in the same order without scanning
the entry points again. ``importlib.metadata`` and ``logging`` are imported only when needed:
the executor builds its manager before it is ready, on the path of every respawn.
"""

from __future__ import annotations

import importlib
import json
import os
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import attrs
import pluggy
from attrs import field, frozen
from attrs.validators import instance_of, optional

from spider_core.plugin import spec
from spider_core.plugin.types import PluginError as PluginError  # raised by the manager and by plugins

if TYPE_CHECKING:
    import logging
    from pathlib import Path

LOGGER_NAME = "spider_core.plugins"


def _logger() -> logging.Logger:
    import logging

    return logging.getLogger(LOGGER_NAME)

#: Third-party plugins register under this entry-point group.
ENTRY_POINT_GROUP = "spider_core"

#: The distribution that ships ``spider_core`` and the default plugins (``pip install
#: spider-core-pool``): ``spider-core`` on the public index is an unrelated project.
DISTRIBUTION = "spider-core-pool"

#: Default plugins: name -> module. Their firstresult hooks are ``trylast``; pluggy calls
#: ``trylast`` implementations in registration order, so ``spider_installed`` comes last here:
#: the package directory's plugins resolve a package before installed distributions are read.
DEFAULT_PLUGINS = {
    "spider_libso": "spider_libso",
    # before spider_msgpack and spider_rustexec: pluggy asks trylast implementations in the
    # order they were registered, and spider_shm's answer only when the pool wants it
    "spider_shm": "spider_shm",
    "spider_msgpack": "spider_msgpack",
    "spider_supervisor": "spider_supervisor",
    "spider_pytasks": "spider_pytasks",
    "spider_rustexec": "spider_rustexec",
    "spider_installed": "spider_installed",
    "spider_prometheus": "spider_prometheus",
    "spider_otel": "spider_otel",
}

#: Default plugins that observe the pool through a library of an extra: each is registered
#: only when its library can be imported (the library itself is imported only by a pool that
#: the plugin observes), so a missing extra means the plugin is not even imported.
OPTIONAL_DEFAULTS = {
    "spider_prometheus": "prometheus_client",  # the `metrics` extra
    "spider_otel": "opentelemetry.trace",  # the `otel` extra
}

ENV_DISABLE = "SPIDER_DISABLE_PLUGINS"
ENV_NO_AUTOLOAD = "SPIDER_DISABLE_PLUGIN_AUTOLOAD"
ENV_TRACE = "SPIDER_TRACE_HOOKS"
#: The plugins to register instead of the defaults and an entry-point scan: a JSON array of
#: :class:`Registration` objects. The pool sets it for its executors to what its own manager
#: registered (``PluginSettings.plugins``).
ENV_PLUGINS = "SPIDER_PLUGINS"

def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() not in ("", "0", "false", "no", "off")


def _frozen(names: Iterable[str]) -> frozenset[str]:
    return frozenset(names)


def _names(value: str | None) -> frozenset[str]:
    return frozenset(n.strip() for n in (value or "").split(",") if n.strip())


@frozen(kw_only=True)
class Registration:
    """A plugin a manager registered by name, and where it came from.

    :param name: The name it is registered (and blocked) under.
    :param value: What to import: ``module`` or ``module:attribute`` (an entry point's value).
    :param default: Whether it is one of :data:`DEFAULT_PLUGINS` (else an entry-point plugin).
    :param distribution: The distribution that provides it, if known.
    :param version: That distribution's version, if known.
    """

    name: str = field(validator=instance_of(str))
    value: str = field(validator=instance_of(str))
    default: bool = field(default=False, validator=instance_of(bool))
    distribution: str | None = field(default=None, validator=optional(instance_of(str)))
    version: str | None = field(default=None, validator=optional(instance_of(str)))

    def load(self) -> Any:
        """Import the plugin object (as ``EntryPoint.load`` does, without importlib.metadata)."""
        module_name, _, attribute = self.value.partition("[")[0].partition(":")
        obj: Any = importlib.import_module(module_name.strip())
        for part in filter(None, attribute.strip().split(".")):
            obj = getattr(obj, part)
        return obj


def _registrations(value: Iterable[Registration] | None) -> tuple[Registration, ...] | None:
    return None if value is None else tuple(value)


def _parse_registrations(text: str) -> tuple[Registration, ...]:
    """The registrations in ``SPIDER_PLUGINS``.

    :raises ValueError: not a JSON array of registration objects.
    """
    try:
        records = json.loads(text)
        if not isinstance(records, list):
            raise TypeError(f"expected an array, got {type(records).__name__}")
        return tuple(Registration(**record) for record in records)
    except (ValueError, TypeError) as e:
        raise ValueError(
            f"{ENV_PLUGINS} must be a JSON array of objects with name, value, default, distribution "
            f"and version (as the pool writes it): {e}"
        ) from None


@frozen(kw_only=True)
class PluginSettings:
    """Which plugins load: the same settings build the pool's manager and the executor's.

    :param blocked: Plugin names never to register.
    :param autoload: Whether entry-point plugins load (from the scan, or from ``plugins``).
    :param trace: Log every hook call.
    :param plugins: What to register, in order, instead of the defaults and an entry-point
        scan (blocked names are still skipped, and third-party ones without ``autoload``);
        None scans. A manager's own ``settings.plugins`` is what it registered, so
        ``get_plugin_manager(pm.settings)`` rebuilds its plugins without scanning.
    """

    blocked: frozenset[str] = field(default=frozenset(), converter=_frozen)
    autoload: bool = True
    trace: bool = False
    plugins: tuple[Registration, ...] | None = field(default=None, converter=_registrations)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, *, blocked: Iterable[str] = ()) -> PluginSettings:
        """Read ``SPIDER_DISABLE_PLUGINS``, ``SPIDER_DISABLE_PLUGIN_AUTOLOAD``,
        ``SPIDER_TRACE_HOOKS`` and ``SPIDER_PLUGINS``; ``blocked`` adds names (from a config).

        :raises ValueError: ``SPIDER_PLUGINS`` is malformed.
        """
        env = os.environ if environ is None else environ
        plugins = env.get(ENV_PLUGINS)
        return cls(
            blocked=_names(env.get(ENV_DISABLE)) | frozenset(blocked),
            autoload=not _truthy(env.get(ENV_NO_AUTOLOAD)),
            trace=_truthy(env.get(ENV_TRACE)),
            plugins=_parse_registrations(plugins) if plugins else None,
        )

    def to_env(self) -> dict[str, str]:
        """Environment variables that make ``from_env`` rebuild these settings in a child."""
        env = {
            ENV_DISABLE: ",".join(sorted(self.blocked)),
            ENV_NO_AUTOLOAD: "0" if self.autoload else "1",
            ENV_TRACE: "1" if self.trace else "0",
        }
        if self.plugins is not None:
            env[ENV_PLUGINS] = json.dumps([attrs.asdict(r) for r in self.plugins])
        return env


@frozen(kw_only=True)
class PluginInfo:
    """What ``spider plugins`` lists about one plugin."""

    name: str
    status: str  # "default", "third-party", "blocked" or "broken"
    distribution: str | None = None
    version: str | None = None
    hooks: tuple[str, ...] = ()
    #: Why a broken plugin could not be loaded, in one line.
    error: str | None = None


def _one_line(error: BaseException) -> str:
    """``Type: message`` of ``error`` on one line."""
    text = " ".join(line.strip() for line in str(error).splitlines() if line.strip())
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


class SpiderPluginManager(pluggy.PluginManager):
    """A pluggy manager that remembers where each plugin came from."""

    def __init__(self, settings: PluginSettings) -> None:
        super().__init__(spec.PROJECT_NAME)
        self.settings = settings
        self._origins: dict[str, tuple[str, str | None, str | None]] = {}
        self._broken: dict[str, str] = {}
        #: What was registered by name, in order (``settings.plugins`` once built).
        self.registered: list[Registration] = []

    def record_origin(self, name: str, status: str, dist: str | None, version: str | None) -> None:
        self._origins[name] = (status, dist, version)

    def plugin_infos(self) -> list[PluginInfo]:
        """Every default and entry-point plugin, registered, blocked or broken."""
        infos = []
        for name, (status, dist, version) in self._origins.items():
            if status == "default" and version is None:
                version = own_version()
            plugin = self.get_plugin(name)
            hooks = tuple(sorted(h.name for h in self.get_hookcallers(plugin) or ())) if plugin else ()
            if self.is_blocked(name):
                status = "blocked"
            elif name in self._broken:
                status = "broken"
            infos.append(
                PluginInfo(
                    name=name,
                    status=status,
                    distribution=dist,
                    version=version,
                    hooks=hooks,
                    error=self._broken.get(name),
                )
            )
        return infos

    def _broken_plugin(self, name: str, problem: str, error: BaseException, tolerate: bool) -> None:
        """Plugin ``name`` cannot be used: a :class:`PluginError` naming it and how to disable
        it, or (``tolerate``) a note that ``plugin_infos`` lists it as broken."""
        if tolerate:
            self._broken[name] = _one_line(error)
            return
        status, dist, _ = self._origins.get(name, ("third-party", None, None))
        if status == "default":
            raise PluginError(
                f"default plugin {name!r} {problem}: {_one_line(error)}; reinstall {DISTRIBUTION}, or disable "
                f"it with {ENV_DISABLE}={name}"
            ) from error
        raise PluginError(
            f"plugin {name!r} (from {dist or 'an unknown distribution'}) {problem}: {_one_line(error)}; "
            f"disable it with {ENV_DISABLE}={name}"
        ) from error

    def _register_checked(self, plugin: Any, name: str, tolerate: bool) -> None:
        try:
            self.register(plugin, name=name)
        except Exception as e:  # a hookimpl that does not match its spec, a plugin registered twice
            if self.get_plugin(name) is plugin:  # pluggy keeps what it registered before the bad hookimpl
                self.unregister(plugin)
            self._broken_plugin(name, "is invalid", e, tolerate)

    def implementers(self, hook_name: str) -> list[str]:
        caller = getattr(self.hook, hook_name)
        return [impl.plugin_name for impl in caller.get_hookimpls()]

    def require(self, hook_name: str) -> None:
        """Raise a clear error if no registered plugin implements ``hook_name``."""
        if not self.implementers(hook_name):
            blocked = sorted(self.settings.blocked) or ["none"]
            raise PluginError(
                f"no plugin implements the required hook {hook_name}; blocked plugins: "
                f"{', '.join(blocked)} (unblock one through {ENV_DISABLE} or install a plugin "
                f"that provides it)"
            )

    def no_such_package(self, name: str, package_dir: Path | None, installed_packages: bool = True) -> str:
        """Why package ``name`` was not found: where it was looked for, which plugins searched,
        which were blocked."""
        searched = ", ".join(self.implementers("spider_resolve_package"))
        blocked = sorted(self.settings.blocked)
        blocked_text = f"; blocked plugins: {', '.join(blocked)}" if blocked else ""
        places = [] if package_dir is None else [f"in {package_dir}"]
        if installed_packages:
            places.append("installed")
        where = " or ".join(places) or "anywhere: installed packages are off"
        if package_dir is None:
            from spider_core.protocol import ENV_PACKAGE_DIR

            where += f", and no package directory is set ({ENV_PACKAGE_DIR})"
        see = "spider packages" if package_dir is None else f"spider packages --package-dir {package_dir}"
        return f"no task package named {name!r} {where} (searched by {searched}{blocked_text}); see `{see}`"

    def call_required(self, hook_name: str, **kwargs: Any) -> Any:
        """Call a firstresult hook that must answer; None becomes a clear error."""
        self.require(hook_name)
        result = getattr(self.hook, hook_name)(**kwargs)
        if result is None:
            raise PluginError(
                f"every plugin implementing {hook_name} ({', '.join(self.implementers(hook_name))}) "
                f"returned None; blocked plugins: {', '.join(sorted(self.settings.blocked)) or 'none'}"
            )
        return result


def _scan_entry_points() -> list[Registration]:
    """The plugins of the ``spider_core`` entry-point group, in the order found."""
    import importlib.metadata

    found = []
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        dist = ep.dist.name if ep.dist else None
        version = ep.dist.version if ep.dist else None
        found.append(Registration(name=ep.name, value=ep.value, distribution=dist, version=version))
    return found


def _not_installed(registration: Registration, error: Exception) -> bool:
    """Whether ``error`` says the plugin's own module is not there (not a module it imports)."""
    if registration.default or not isinstance(error, ModuleNotFoundError) or not error.name:
        return False
    module = registration.value.partition("[")[0].partition(":")[0].strip()
    return module == error.name or module.startswith(error.name + ".")


def _register_all(
    pm: SpiderPluginManager, registrations: Iterable[Registration], tolerate: bool, listed: bool = False
) -> None:
    """Import and register each plugin not blocked, keeping the first of a name.

    ``listed``: the registrations come from another process (``settings.plugins``), where
    an entry-point plugin may be installed that this process cannot import (the pool found it
    through a ``PYTHONPATH`` its executors do not inherit): it is left out, as a scan here
    would not have found it.
    """
    for registration in registrations:
        name = registration.name
        if registration.default:
            pm.record_origin(name, "default", DISTRIBUTION, registration.version)
        else:
            pm.record_origin(name, "third-party", registration.distribution, registration.version)
        if pm.is_blocked(name) or pm.get_plugin(name) is not None:
            continue
        try:
            plugin = registration.load()
        except Exception as e:
            if listed and _not_installed(registration, e):
                _logger().debug("plugin %r (%s) is not installed here: %s", name, registration.value, e)
                continue
            pm._broken_plugin(name, "failed to import", e, tolerate)
            continue
        pm._register_checked(plugin, name, tolerate)
        if pm.get_plugin(name) is plugin:
            pm.registered.append(registration)


def _check_pending(pm: SpiderPluginManager, tolerate: bool) -> None:
    """Refuse (or set aside as broken) each plugin implementing a hook nobody specified."""
    while True:
        try:
            pm.check_pending()
            return
        except pluggy.PluginValidationError as e:
            name = pm.get_name(e.plugin) or repr(e.plugin)
            pm._broken_plugin(name, "is invalid", e, tolerate)
            pm.unregister(e.plugin)


def get_plugin_manager(
    settings: PluginSettings | None = None,
    *,
    blocked: Iterable[str] = (),
    autoload: bool | None = None,
    tolerate_broken: bool = False,
) -> SpiderPluginManager:
    """A fresh plugin manager: specs, the defaults and the entry-point plugins (or exactly
    ``settings.plugins``), then validation. Its ``settings.plugins`` lists what it registered.

    :param settings: Defaults to :meth:`PluginSettings.from_env`.
    :param blocked: More plugin names to block.
    :param autoload: Override whether entry-point plugins load.
    :param tolerate_broken: Leave out a plugin that fails to import or does not match the hook
        specs, listing it as ``broken`` in :meth:`~SpiderPluginManager.plugin_infos` (what
        ``spider plugins`` does), instead of raising :class:`PluginError`.
    :raises PluginError: a plugin fails to import or does not match the hook specs (unless
        ``tolerate_broken``).
    """
    settings = settings or PluginSettings.from_env()
    if blocked:
        settings = attrs.evolve(settings, blocked=settings.blocked | frozenset(blocked))
    if autoload is not None:
        settings = attrs.evolve(settings, autoload=autoload)
    pm = SpiderPluginManager(settings)
    pm.add_hookspecs(spec)
    for name in settings.blocked:
        pm.set_blocked(name)
    defaults = [
        Registration(name=name, value=module, default=True, distribution=DISTRIBUTION)
        for name, module in DEFAULT_PLUGINS.items()
        if name not in OPTIONAL_DEFAULTS or _importable(OPTIONAL_DEFAULTS[name])
    ]
    if settings.plugins is None:
        _register_all(pm, defaults, tolerate_broken)
        if settings.autoload:
            _register_all(pm, _scan_entry_points(), tolerate_broken)
            unknown = sorted(settings.blocked - set(pm._origins))
            if unknown:  # without autoload, entry-point names are not known
                _logger().warning("%s names no installed plugin: %s", ENV_DISABLE, ", ".join(unknown))
    else:
        for registration in defaults:  # listed (blocked ones too), even if left out of plugins
            pm.record_origin(registration.name, "default", DISTRIBUTION, None)
        wanted = [r for r in settings.plugins if settings.autoload or r.default]
        _register_all(pm, wanted, tolerate_broken, listed=True)
    _check_pending(pm, tolerate_broken)
    pm.settings = attrs.evolve(
        settings, plugins=[r for r in pm.registered if pm.get_plugin(r.name) is not None]
    )
    if settings.trace:
        logger = _logger()
        pm.trace.root.setwriter(lambda message: logger.info("hook %s", message.rstrip()))
        pm.enable_tracing()
    return pm


def _importable(module: str) -> bool:
    """Whether ``module`` can be imported here (without importing it, but its parent package)."""
    import importlib.util

    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # its parent package is missing or broken
        return False


def own_version() -> str | None:
    """The installed version of :data:`DISTRIBUTION`, or None if it is not installed."""
    import importlib.metadata

    try:
        return importlib.metadata.version(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        return None
