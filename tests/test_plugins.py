"""The plugin manager: defaults, entry points, blocking, tracing, and the executor honouring them."""

from __future__ import annotations

import ast
import importlib.util
import inspect
import logging
import os
import re
import textwrap
from pathlib import Path

import pytest

from helpers import ExecutorProcess, make_distribution
from spider_core.plugin import PackageSource
from spider_core.plugin import spec as hookspecs
from spider_core.plugin.manager import (
    DEFAULT_PLUGINS,
    OPTIONAL_DEFAULTS,
    PluginError,
    PluginSettings,
    Registration,
    get_plugin_manager,
)
from spider_core.protocol import EXIT_SETUP_ERROR, Ready
from spider_core.tdl import EMPTY_FRAME, decode_values

HOOKS = sorted(name for name in dir(hookspecs) if name.startswith("spider_"))

#: The observers among the defaults whose library is installed here (the ``metrics`` and
#: ``otel`` extras; CI's test extra has both), and every default registered here.
def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ImportError:  # its parent package is missing
        return False


OBSERVERS = [name for name, module in OPTIONAL_DEFAULTS.items() if _importable(module)]
AVAILABLE = [name for name in DEFAULT_PLUGINS if name not in OPTIONAL_DEFAULTS or name in OBSERVERS]


FAKE_PLUGIN = """
    from spider_core import hookimpl
    from spider_core.plugin import PackageSource
    from spider_core.protocol import EXIT_SETUP_ERROR, Ready
    from spider_core.tdl import encode_values


    class Package:
        name = "fakepkg"
        kind = "fake"

        def execute(self, task, raw_ctx, raw_inputs):
            return encode_values(["answered by fakeplugin", task])


    @hookimpl
    def spider_resolve_package(package, package_dir):
        if package == "fakepkg":
            return PackageSource(package=package, kind="fake", location=package_dir)


    @hookimpl
    def spider_load_package(source):
        if source.kind == "fake":
            return Package()
"""


@pytest.fixture
def fake_dist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = make_distribution(tmp_path / "site", "spider-fakeplugin", "fakeplugin", FAKE_PLUGIN, "fake")
    monkeypatch.syspath_prepend(str(root))
    return root


def test_defaults_are_registered(pm) -> None:
    assert set(AVAILABLE) <= {name for name, _ in pm.list_name_plugin()}
    infos = {info.name: info for info in pm.plugin_infos()}
    assert infos["spider_libso"].status == "default"
    assert infos["spider_libso"].distribution == "spider-core-pool"
    assert infos["spider_libso"].hooks == (
        "spider_inspect_package", "spider_list_packages", "spider_load_package", "spider_resolve_package"
    )
    assert infos["spider_msgpack"].hooks == ("spider_framing",)


def test_defaults_of_firstresult_hooks_are_trylast(pm) -> None:
    for name in AVAILABLE:
        for caller in pm.get_hookcallers(pm.get_plugin(name)):
            if caller.spec.opts.get("firstresult"):
                impl = next(i for i in caller.get_hookimpls() if i.plugin_name == name)
                assert impl.trylast, f"{name}.{caller.name} must be trylast"


def test_fake_resolver_wins_over_the_default(pm, package_dir: Path) -> None:
    class Resolver:
        @hookspecs.hookimpl
        def spider_resolve_package(self, package, package_dir):
            return PackageSource(package=package, kind="mine", location=package_dir / "elsewhere")

    pm.register(Resolver(), name="resolver")
    source = pm.hook.spider_resolve_package(package="integration_test_tasks", package_dir=package_dir, installed_packages=True)
    assert source.kind == "mine"


def test_resolver_may_return_a_path(package_dir: Path) -> None:
    library = package_dir / "integration_test_tasks" / "libintegration_test_tasks.so"

    class PathResolver:
        @hookspecs.hookimpl
        def spider_resolve_package(self, package):
            return library if package == "alias" else None

    pm = get_plugin_manager(PluginSettings(autoload=False))
    pm.register(PathResolver(), name="path-resolver")
    assert pm.hook.spider_resolve_package(package="alias", package_dir=package_dir, installed_packages=True) == library


def test_blocking_by_settings(package_dir: Path) -> None:
    blocked = {"spider_installed", "spider_libso", "spider_pytasks"}
    pm = get_plugin_manager(PluginSettings(autoload=False, blocked=blocked))
    assert pm.get_plugin("spider_libso") is None
    assert {i.name: i.status for i in pm.plugin_infos()}["spider_libso"] == "blocked"
    with pytest.raises(
        PluginError,
        match="no plugin implements the required hook spider_resolve_package; "
        "blocked plugins: spider_installed, spider_libso, spider_pytasks",
    ):
        pm.require("spider_resolve_package")


def test_settings_from_env_and_back() -> None:
    env = {"SPIDER_DISABLE_PLUGINS": " a, b ,", "SPIDER_DISABLE_PLUGIN_AUTOLOAD": "1", "SPIDER_TRACE_HOOKS": "yes"}
    settings = PluginSettings.from_env(env, blocked=["c"])
    assert settings == PluginSettings(blocked={"a", "b", "c"}, autoload=False, trace=True)
    assert PluginSettings.from_env(settings.to_env()) == settings
    assert PluginSettings.from_env({}) == PluginSettings()


def test_call_required_turns_none_into_an_error(pm) -> None:
    class Silent:
        @hookspecs.hookimpl(tryfirst=True)
        def spider_framing(self, max_frame_size):
            return None

    pm2 = get_plugin_manager(PluginSettings(autoload=False, blocked={"spider_msgpack"}))
    pm2.register(Silent(), name="silent")
    with pytest.raises(PluginError, match="every plugin implementing spider_framing \\(spider_shm, silent\\) returned None; blocked plugins: spider_msgpack"):
        pm2.call_required("spider_framing", max_frame_size=10, environment={})
    assert pm.call_required("spider_framing", max_frame_size=10, environment={}).max_frame_size == 10


def test_unknown_hook_in_a_plugin_is_rejected(pm) -> None:
    class Typo:
        @hookspecs.hookimpl
        def spider_resolve_pakage(self, package):
            return None

    pm.register(Typo(), name="typo")
    with pytest.raises(Exception, match="spider_resolve_pakage"):
        pm.check_pending()


def test_entry_point_plugin_is_loaded_and_listed(fake_dist: Path, package_dir: Path) -> None:
    pm = get_plugin_manager(PluginSettings())
    info = {i.name: i for i in pm.plugin_infos()}["fake"]
    assert (info.status, info.distribution, info.version) == ("third-party", "spider-fakeplugin", "1.2.3")
    assert info.hooks == ("spider_load_package", "spider_resolve_package")
    source = pm.hook.spider_resolve_package(package="fakepkg", package_dir=package_dir, installed_packages=True)
    assert source.kind == "fake"


def test_entry_point_plugin_skipped_without_autoload(fake_dist: Path) -> None:
    pm = get_plugin_manager(PluginSettings(autoload=False))
    assert pm.get_plugin("fake") is None


def test_entry_point_plugin_blocked(fake_dist: Path) -> None:
    pm = get_plugin_manager(PluginSettings(blocked={"fake"}))
    assert pm.get_plugin("fake") is None
    assert {i.name: i.status for i in pm.plugin_infos()}["fake"] == "blocked"


def child_env(root: Path, **extra: str) -> dict[str, str]:
    path = os.pathsep.join(p for p in (str(root), os.environ.get("PYTHONPATH")) if p)
    return {"PYTHONPATH": path, "SPIDER_DISABLE_PLUGIN_AUTOLOAD": "0", **extra}


def test_entry_point_plugin_is_honoured_in_the_executor(fake_dist: Path, package_dir: Path) -> None:
    proc = ExecutorProcess(package_dir, env=child_env(fake_dist))
    try:
        assert isinstance(proc.receive(), Ready)
        result = proc.execute("fakepkg", "hello", EMPTY_FRAME)
        assert result.ok is True
        assert decode_values(result.payload) == ["answered by fakeplugin", "hello"]
    finally:
        proc.close()


def test_blocked_entry_point_plugin_is_skipped_in_the_executor(fake_dist: Path, package_dir: Path) -> None:
    proc = ExecutorProcess(package_dir, env=child_env(fake_dist, SPIDER_DISABLE_PLUGINS="fake"))
    try:
        assert isinstance(proc.receive(), Ready)
        result = proc.execute("fakepkg", "hello", EMPTY_FRAME)
        assert result.ok is False
    finally:
        proc.close()


def test_plugin_that_fails_to_import(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = make_distribution(tmp_path / "site", "spider-broken", "brokenplugin", "import no_such_module_xyz\n", "broken")
    monkeypatch.syspath_prepend(str(root))
    with pytest.raises(PluginError) as info:
        get_plugin_manager(PluginSettings())
    message = str(info.value)
    assert message == (
        "plugin 'broken' (from spider-broken) failed to import: ModuleNotFoundError: "
        "No module named 'no_such_module_xyz'; disable it with SPIDER_DISABLE_PLUGINS=broken"
    )
    assert "\n" not in message
    assert get_plugin_manager(PluginSettings(blocked={"broken"})).get_plugin("broken") is None



HALF_VALID = """
    from spider_core import hookimpl


    @hookimpl
    def spider_executor_started(executor_id):
        pass


    @hookimpl
    def spider_task_finished(request, no_such_argument):
        pass
"""


def test_broken_plugins_are_listed_when_tolerated_and_refused_otherwise(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for dist, module, source, name in [
        ("spider-broken", "brokenplugin", "raise RuntimeError('boom\\nsecond line')\n", "broken"),
        ("spider-halfvalid", "halfvalid", HALF_VALID, "halfvalid"),
        ("spider-typo", "typoplugin", "from spider_core import hookimpl\n@hookimpl\ndef spider_no_such_hook():\n    pass\n",
         "typo"),
    ]:
        monkeypatch.syspath_prepend(str(make_distribution(tmp_path / name, dist, module, source, name)))
    pm = get_plugin_manager(PluginSettings(), tolerate_broken=True)
    infos = {i.name: i for i in pm.plugin_infos()}
    assert (infos["broken"].status, infos["broken"].error) == ("broken", "RuntimeError: boom second line")
    assert infos["halfvalid"].status == "broken" and "no_such_argument" in infos["halfvalid"].error
    assert infos["typo"].status == "broken" and "unknown hook 'spider_no_such_hook'" in infos["typo"].error
    assert all("\n" not in i.error for i in infos.values() if i.error)
    assert infos["spider_libso"].status == "default" and infos["spider_libso"].error is None
    # Nothing of a broken plugin stays registered, not even the hooks it got right.
    assert [pm.get_plugin(n) for n in ("broken", "halfvalid", "typo")] == [None, None, None]
    assert pm.implementers("spider_executor_started") == []
    with pytest.raises(PluginError, match=r"^plugin 'broken' \(from spider-broken\) failed to import: RuntimeError: boom"):
        get_plugin_manager(PluginSettings(blocked={"halfvalid", "typo"}))
    with pytest.raises(PluginError, match=r"^plugin 'halfvalid' \(from spider-halfvalid\) is invalid: .*no_such_argument"):
        get_plugin_manager(PluginSettings(blocked={"broken", "typo"}))
    with pytest.raises(PluginError, match=r"^plugin 'typo' \(from spider-typo\) is invalid: PluginValidationError: "
                                          r"unknown hook 'spider_no_such_hook'.*; disable it with SPIDER_DISABLE_PLUGINS=typo$"):
        get_plugin_manager(PluginSettings(blocked={"broken", "halfvalid"}))
    pm = get_plugin_manager(PluginSettings(blocked={"broken", "halfvalid", "typo"}))
    assert {i.name: i.status for i in pm.plugin_infos()}["halfvalid"] == "blocked"

def test_trace_hooks_logs_calls(caplog: pytest.LogCaptureFixture, package_dir: Path) -> None:
    pm = get_plugin_manager(PluginSettings(autoload=False, trace=True))
    with caplog.at_level(logging.INFO, logger="spider_core.plugins"):
        pm.hook.spider_resolve_package(package="integration_test_tasks", package_dir=package_dir, installed_packages=True)
    assert any("spider_resolve_package" in r.getMessage() for r in caplog.records)


# -- the author API --------------------------------------------------------------------------

#: Everything ``spider_core.plugin`` gives a plugin author: the marker, the types hooks take and
#: return, the framing and protocol interfaces, the helpers a plugin calls, PluginError to refuse.
AUTHOR_API = [
    "CORE_PROTOCOL", "CoreProtocol", "ENV_FORK_SERVER", "ENV_PACKAGE_DIR", "ExecuteRequest", "ExecutorCrash", "ExecutorHandle",
    "ExecutorProtocol", "ExitReason", "Frame", "FrameDecoder", "Framing", "FramingError", "InTaskFailure",
    "InstalledPackage", "LaunchSpec", "LengthDelimitedDecoder", "Outcome", "PackageInfo", "PackageOrigin",
    "PackageSource", "PluginError", "PoolConfig", "PoolView", "ProtocolError", "RespawnDecision", "RespawnState",
    "SpawnReason", "Spawner", "Success", "TASK_PACKAGE_GROUP", "TaskPackage", "Timeout", "die_with_parent",
    "execute_fields", "execute_primitive", "hookimpl", "outcome_name",
]


def _host_names() -> set[str]:
    """The host's side: every public name the manager module defines, the spec marker and
    project name, and the protocol internals of pool and executor."""
    from spider_core.plugin import manager

    tree = ast.parse(Path(manager.__file__).read_text())
    defined = {node.name for node in tree.body if isinstance(node, ast.ClassDef | ast.FunctionDef)}
    defined |= {node.target.id for node in tree.body if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)}
    defined |= {t.id for node in tree.body if isinstance(node, ast.Assign) for t in node.targets if isinstance(t, ast.Name)}
    public = {name for name in defined if not name.startswith("_")}
    return public | {
        "hookspec", "PROJECT_NAME", "DEFAULT_MAX_FRAME_SIZE", "EXIT_REASONS", "SPAWN_REASONS",
    }


def test_the_author_api_is_exactly_what_a_plugin_needs() -> None:
    import spider_core.plugin

    assert spider_core.plugin.__all__ == AUTHOR_API
    for name in AUTHOR_API:
        assert getattr(spider_core.plugin, name) is not None


def test_no_host_name_is_in_the_author_api() -> None:
    import spider_core.plugin

    host = _host_names()
    assert {"SpiderPluginManager", "DEFAULT_PLUGINS", "Registration", "get_plugin_manager", "PluginSettings",
            "PluginInfo", "ENTRY_POINT_GROUP"} <= host
    assert host.isdisjoint(spider_core.plugin.__all__), host & set(spider_core.plugin.__all__)
    assert host.isdisjoint(dir(spider_core.plugin))
    for name in sorted(host):
        with pytest.raises(AttributeError, match=f"module 'spider_core.plugin' has no attribute '{name}'"):
            getattr(spider_core.plugin, name)


# -- meta-tests -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", HOOKS)
def test_every_spec_is_documented(name: str) -> None:
    spec = getattr(hookspecs, name)
    doc = inspect.getdoc(spec) or ""
    for param in inspect.signature(spec).parameters:
        assert f":param {param}:" in doc, f"{name} does not document {param}"
    assert "Default:" in doc, f"{name} has no Default: line"
    assert ("First non-None result wins" in doc) or ("All implementations are called" in doc), name
    if getattr(spec, "spider_core_spec", {}).get("firstresult"):
        assert ":return:" in doc and "None" in doc.split(":return:")[1], f"{name}: say what None means"


@pytest.mark.parametrize("name", HOOKS)
def test_the_plugin_api_exports_every_type_a_hook_takes_or_returns(name: str) -> None:
    import spider_core.plugin

    spec = getattr(hookspecs, name)
    annotations = " ".join(str(a) for a in spec.__annotations__.values())
    named = set(re.findall(r"\b[A-Z]\w+", annotations)) - {"Path", "None"}  # pathlib.Path: the standard library's
    assert named <= set(spider_core.plugin.__all__), named - set(spider_core.plugin.__all__)


@pytest.mark.parametrize("name", HOOKS)
def test_every_hook_has_a_test(name: str) -> None:
    here = Path(__file__)
    texts = [p.read_text() for p in here.parent.glob("test_*.py") if p != here]
    texts.append(here.read_text().split("# -- meta-tests")[0])
    assert any(re.search(rf"\b{name}\b", text) for text in texts), f"no test exercises {name}"


def test_blocking_a_name_no_plugin_has_is_warned(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="spider_core.plugins"):
        get_plugin_manager(PluginSettings(blocked={"spider_libso", "no_such_plugin"}))
    assert [r.getMessage() for r in caplog.records] == ["SPIDER_DISABLE_PLUGINS names no installed plugin: no_such_plugin"]


# -- the plugin list a manager hands to the executor ----------------------------------------


def no_scan(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.metadata

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the entry points were scanned")

    monkeypatch.setattr(importlib.metadata, "entry_points", refuse)


def test_a_manager_records_what_it_registered(fake_dist: Path) -> None:
    pm = get_plugin_manager(PluginSettings(blocked={"spider_pytasks"}))
    assert pm.settings.plugins == (
        Registration(name="spider_libso", value="spider_libso", default=True, distribution="spider-core-pool"),
        Registration(name="spider_shm", value="spider_shm", default=True, distribution="spider-core-pool"),
        Registration(name="spider_msgpack", value="spider_msgpack", default=True, distribution="spider-core-pool"),
        Registration(name="spider_supervisor", value="spider_supervisor", default=True, distribution="spider-core-pool"),
        Registration(name="spider_rustexec", value="spider_rustexec", default=True, distribution="spider-core-pool"),
        Registration(name="spider_installed", value="spider_installed", default=True, distribution="spider-core-pool"),
        *(Registration(name=name, value=name, default=True, distribution="spider-core-pool") for name in OBSERVERS),
        Registration(name="fake", value="fakeplugin", distribution="spider-fakeplugin", version="1.2.3"),
    )
    assert [r.name for r in get_plugin_manager(PluginSettings(autoload=False)).settings.plugins] == AVAILABLE


def test_broken_plugins_are_not_handed_over(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = make_distribution(tmp_path / "site", "spider-broken", "brokenplugin", "raise RuntimeError('boom')\n", "broken")
    monkeypatch.syspath_prepend(str(root))
    pm = get_plugin_manager(PluginSettings(), tolerate_broken=True)
    assert [r.name for r in pm.settings.plugins] == AVAILABLE


def test_the_recorded_settings_rebuild_the_manager_without_a_scan(fake_dist: Path, monkeypatch: pytest.MonkeyPatch,
                                                                   package_dir: Path) -> None:
    first = get_plugin_manager(PluginSettings())
    no_scan(monkeypatch)
    settings = PluginSettings.from_env(first.settings.to_env())
    assert settings == first.settings
    pm = get_plugin_manager(settings)
    assert pm.list_name_plugin() == first.list_name_plugin()  # the same modules, in the same order
    assert pm.settings == first.settings
    assert pm.hook.spider_resolve_package(package="fakepkg", package_dir=package_dir, installed_packages=True).kind == "fake"
    infos = {i.name: i for i in pm.plugin_infos()}
    assert (infos["fake"].status, infos["fake"].distribution, infos["fake"].version) == (
        "third-party", "spider-fakeplugin", "1.2.3"
    )
    assert infos["spider_libso"].status == "default"


def test_the_list_still_obeys_blocking_and_autoload(fake_dist: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    listed = get_plugin_manager(PluginSettings()).settings.plugins
    no_scan(monkeypatch)
    blocked = get_plugin_manager(PluginSettings(plugins=listed, blocked={"fake", "spider_libso"}))
    assert blocked.get_plugin("fake") is None and blocked.get_plugin("spider_libso") is None
    assert {i.name: i.status for i in blocked.plugin_infos()}["spider_libso"] == "blocked"
    no_autoload = get_plugin_manager(PluginSettings(plugins=listed, autoload=False))
    assert [name for name, _ in no_autoload.list_name_plugin()] == AVAILABLE


def test_a_registration_may_name_an_object_in_a_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "objplugin.py").write_text(
        "from spider_core import hookimpl\n"
        "class Plugin:\n"
        "    class Inner:\n"
        "        @hookimpl\n"
        "        def spider_executor_started(self, executor_id):\n"
        "            pass\n"
        "instance = Plugin.Inner()\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    no_scan(monkeypatch)
    listed = (Registration(name="obj", value="objplugin:instance"), Registration(name="cls", value="objplugin : Plugin.Inner [extra]"))
    pm = get_plugin_manager(PluginSettings(plugins=listed))
    assert sorted(pm.implementers("spider_executor_started")) == ["cls", "obj"]


def test_a_listed_plugin_that_fails_to_import_names_its_distribution(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "needsdep.py").write_text("import no_such_dependency_xyz\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    no_scan(monkeypatch)
    listed = (Registration(name="needy", value="needsdep:plugin", distribution="spider-needy", version="1.0"),)
    with pytest.raises(PluginError) as info:
        get_plugin_manager(PluginSettings(plugins=listed))
    assert str(info.value) == (
        "plugin 'needy' (from spider-needy) failed to import: ModuleNotFoundError: No module named "
        "'no_such_dependency_xyz'; disable it with SPIDER_DISABLE_PLUGINS=needy"
    )


def test_a_listed_plugin_not_installed_here_is_left_out(monkeypatch: pytest.MonkeyPatch) -> None:
    """As a scan in this process would not have found it (the pool saw it through a
    PYTHONPATH its executors do not inherit)."""
    no_scan(monkeypatch)
    listed = (
        Registration(name="gone", value="no_such_module_xyz.sub:plugin", distribution="spider-gone"),
        Registration(name="spider_msgpack", value="spider_msgpack", default=True, distribution="spider-core-pool"),
    )
    pm = get_plugin_manager(PluginSettings(plugins=listed))
    assert [name for name, _ in pm.list_name_plugin()] == ["spider_msgpack"]
    assert [r.name for r in pm.settings.plugins] == ["spider_msgpack"]
    missing_default = (Registration(name="spider_gone", value="no_such_module_xyz", default=True),)
    with pytest.raises(PluginError, match="^default plugin 'spider_gone' failed to import"):
        get_plugin_manager(PluginSettings(plugins=missing_default))


@pytest.mark.parametrize(
    "value",
    ["not json", '{"name": "x"}', '[{"name": "x"}]', '[{"name": "x", "value": "m", "color": "red"}]',
     '[{"name": 5, "value": "m"}]', '["x"]'],
)
def test_a_malformed_plugin_list_is_refused(value: str) -> None:
    with pytest.raises(ValueError, match="^SPIDER_PLUGINS must be a JSON array of objects"):
        PluginSettings.from_env({"SPIDER_PLUGINS": value})


def test_the_executor_registers_the_handed_over_list(tmp_path: Path, package_dir: Path) -> None:
    """A plugin module with no entry point at all: only the list can make the executor load it."""
    (tmp_path / "fakeplugin.py").write_text(textwrap.dedent(FAKE_PLUGIN))
    defaults = get_plugin_manager(PluginSettings(autoload=False)).settings.plugins
    plugins = (*defaults, Registration(name="fake", value="fakeplugin", distribution="spider-fakeplugin"))
    env = {**PluginSettings(plugins=plugins).to_env(), **child_env(tmp_path)}
    proc = ExecutorProcess(package_dir, env=env)
    try:
        assert isinstance(proc.receive(), Ready)
        result = proc.execute("fakepkg", "hello", EMPTY_FRAME)
        assert result.ok is True
        assert decode_values(result.payload) == ["answered by fakeplugin", "hello"]
    finally:
        proc.close()
    # Blocked, or a third-party plugin with autoload off: the executor leaves it out.
    for extra in ({"SPIDER_DISABLE_PLUGINS": "fake"}, {"SPIDER_DISABLE_PLUGIN_AUTOLOAD": "1"}):
        proc = ExecutorProcess(package_dir, env={**env, **extra})
        try:
            assert isinstance(proc.receive(), Ready)
            assert proc.execute("fakepkg", "hello", EMPTY_FRAME).ok is False
        finally:
            proc.close()


def test_the_executor_refuses_a_malformed_plugin_list(package_dir: Path) -> None:
    proc = ExecutorProcess(package_dir, env={"SPIDER_PLUGINS": "[1, 2"})
    try:
        assert proc.receive() is None
        assert proc.wait() == EXIT_SETUP_ERROR
        (event,) = [e for e in proc.stderr_events() if e["event"] == "exit"]
        assert event["reason"] == "setup failed" and event["error"].startswith("SPIDER_PLUGINS must be a JSON array")
    finally:
        proc.close()


def test_the_pool_hands_its_entry_point_plugins_to_the_executor(
    fake_dist: Path, package_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import spider_core as sc

    monkeypatch.setenv("PYTHONPATH", str(fake_dist))
    # autoload asked for, so that SPIDER_DISABLE_PLUGIN_AUTOLOAD (tox's noautoload envs) does not apply
    config = sc.PoolConfig(package_dir=package_dir, inherited_env=("PYTHONPATH",), plugin_autoload=True)
    with sc.SyncProcessPool(config) as pool:
        outcome = pool.execute(sc.ExecuteRequest(package="fakepkg", task="hello"), hard_timeout=30)
    assert isinstance(outcome, sc.Success), outcome
    assert outcome.values == ["answered by fakeplugin", "hello"]


def test_the_executor_logs_hook_traces_and_plugin_imports_as_json_lines(tmp_path: Path, package_dir: Path) -> None:
    (tmp_path / "loudplugin.py").write_text(
        "import logging\n"
        "from spider_core import hookimpl\n"
        "logging.getLogger('loudplugin').info('loud plugin imported')\n"
        "@hookimpl\n"
        "def spider_executor_started(executor_id):\n"
        "    pass\n"
    )
    defaults = get_plugin_manager(PluginSettings(autoload=False)).settings.plugins
    cases = [
        ({**PluginSettings(plugins=defaults, trace=True).to_env()}, "hook"),
        ({**PluginSettings(plugins=(*defaults, Registration(name="loud", value="loudplugin"))).to_env(),
          **child_env(tmp_path)}, "loud plugin imported"),
    ]
    for env, expected in cases:
        proc = ExecutorProcess(package_dir, env=env)
        try:
            assert isinstance(proc.receive(), Ready)
            proc.proc.stdin.close()  # end of input: the executor exits
            assert proc.wait() == 0
            events = [e for e in proc.stderr_events() if e["event"].startswith(expected)]
            assert events and events[0]["level"] == "info", expected
        finally:
            proc.close()
