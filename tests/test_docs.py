"""The documentation site (docs/): every example runs, the references are complete, it builds.

Every ```python block of ``docs/*.md`` runs here against the real pool and the bundled C
package:

- most by :func:`test_python_example_runs`, in a fresh working directory where the page's
  package files (blocks whose first line is ``# packages/<name>/...``) are written, with
  ``sc``, ``package_dir`` and ``Path`` defined;
- the blocks listed in :data:`CHECKED` by a test of their own, which also checks what they
  print or do (their marker must appear in exactly one block); a block with an
  ``if __name__ == "__main__":`` guard (the Dask example) must be one of them, since run as a
  module it would do nothing;
- a block preceded by ``<!-- not-run: reason -->`` by nothing (there is none today).

C blocks are compiled (the package is built and run, the ABI's declarations are checked for
the layout they document), and some console transcripts are replayed command by command.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import types
from pathlib import Path
from typing import NamedTuple

import pytest

import spider_core as sc
from helpers import REPO, SPIDER, TASK_PACKAGES

pytest_plugins = ["pytester"]

DOCS = REPO / "docs"
PAGES = sorted(DOCS.glob("*.md"))
PACKAGE_FILE = re.compile(r"# (packages/[\w/.]+\.py)\n")
NOT_RUN = re.compile(r"<!--\s*not-run:\s*(.*?)\s*-->")


class Block(NamedTuple):
    page: str
    line: int  # of the block's first code line
    language: str
    code: str
    not_run: str | None  # the reason, if the block is marked not runnable

    @property
    def id(self) -> str:
        return f"{self.page}:{self.line}"

    @property
    def package_file(self) -> str | None:
        """``packages/<name>/...py`` if the block is a file of a task package."""
        match = PACKAGE_FILE.match(self.code)
        return match.group(1) if match else None


def parse(page: Path) -> list[Block]:
    """The fenced blocks of a Markdown page (backtick fences, any length, MyST directives too)."""
    blocks = []
    lines = page.read_text().splitlines(keepends=True)
    i = 0
    while i < len(lines):
        fence = re.match(r"(`{3,})([^`\s]*)", lines[i])
        if not fence:
            i += 1
            continue
        ticks, language = fence.groups()
        previous = next((line for line in reversed(lines[:i]) if line.strip()), "")
        marker = NOT_RUN.fullmatch(previous.strip())
        end = next(j for j in range(i + 1, len(lines)) if lines[j].rstrip() == ticks)
        blocks.append(Block(page.name, i + 2, language, "".join(lines[i + 1 : end]), marker and marker.group(1)))
        i = end + 1
    return blocks


BLOCKS = [block for page in PAGES for block in parse(page)]

#: Blocks run by a test of their own: a text only that block contains -> that test's name.
CHECKED = {
    "async def main(package_dir": "test_async_embedding",
    "as_completed(futures)": "test_slots_submit_and_map",
    "except sc.ExecutorCrashed": "test_values_or_an_exception",
    "# spider_metrics.py": "test_metrics_plugin",
    "# spider_nice.py": "test_launcher_plugin",
    "# spider_pinned.py": "test_spawner_plugin",
    "# spider_tinyrust.py": "test_protocol_plugin",
    "def test_add(spider_build_package": "test_pytest_examples",
    "def test_fibonacci(spider_build_package": "test_pytest_examples",
    'package = Package("complex_number")': "test_python_package_example",
    "square(x: i64)": "test_c_package",
    'sc.build_package("hello"': "test_c_package",
    "typedef struct spider_tdl_version": "test_abi_declarations_have_the_documented_layout",
    "spider_core.dask.SpiderWorkerPlugin(config)": "test_dask_example",
    "trace.set_tracer_provider(provider)": "test_otel_setup",
}


#: The libraries of the observability extras (``metrics``, ``otel``): in the test extra, so CI
#: runs the examples that use them; a venv without the extras skips those.
EXTRAS = ("prometheus_client", "opentelemetry")


def needs_extras(code: Block) -> None:
    """Skip unless the extras' libraries ``code`` imports are installed."""
    for module in EXTRAS:
        if re.search(rf"^(from|import) {module}\b", code.code, flags=re.M):
            pytest.importorskip(module)


def checked(block: Block) -> str | None:
    names = {test for marker, test in CHECKED.items() if marker in block.code}
    assert len(names) <= 1, f"{block.id} is claimed by {names}"
    return names.pop() if names else None


def block(language: str, containing: str) -> Block:
    matches = [b for b in BLOCKS if b.language == language and containing in b.code]
    assert len(matches) == 1, f"expected one {language} block containing {containing!r}, found {len(matches)}"
    return matches[0]


def page_blocks(page: str, language: str) -> list[Block]:
    return [b for b in BLOCKS if b.page == page and b.language == language]


GENERIC = [
    b for b in BLOCKS if b.language == "python" and not b.not_run and not b.package_file and checked(b) is None
]
PACKAGE_FILES = [b for b in BLOCKS if b.language == "python" and b.package_file]


def run(code: Block, namespace: dict | None = None) -> dict:
    """Execute a block as the module ``docs_example`` (annotations are resolved through
    ``sys.modules``, as in a user's own module); tracebacks name the page and its line."""
    module = types.ModuleType("docs_example")
    module.__dict__.update(namespace or {})
    sys.modules[module.__name__] = module
    try:
        exec(compile("\n" * (code.line - 1) + code.code, str(DOCS / code.page), "exec"), module.__dict__)
    finally:
        del sys.modules[module.__name__]
    if namespace is not None:
        namespace.update(module.__dict__)
    return module.__dict__


def write_package_files(page: str, root: Path) -> None:
    for b in PACKAGE_FILES:
        if b.page == page:
            target = root / b.package_file
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(b.code)


def spider_env() -> dict[str, str]:
    """The environment of a user's shell: this interpreter's ``spider`` first on PATH, no
    spider-core settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPIDER_")}
    env["PATH"] = f"{SPIDER.parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def replay(transcript: Block, cwd: Path, paths: dict[str, str] | None = None, *, env: dict[str, str] | None = None,
           varying: str | None = None) -> None:
    """Run each ``$ command`` of a console block in one shell and compare the whole output,
    commands included, with the block (``paths`` maps real paths to the ones shown; what the
    regular expression ``varying`` matches, a measured time say, is left out of both)."""
    commands = [line[2:] for line in transcript.code.splitlines() if line.startswith("$ ")]
    script = "exec 2>&1\n" + "".join(f"printf '%s\\n' {shlex.quote('$ ' + c)}\n{c}\n" for c in commands)
    done = subprocess.run(["bash", "-c", script], cwd=cwd, env=env or spider_env(), capture_output=True, text=True,
                          timeout=120)
    output, expected = done.stdout, transcript.code
    for real, shown in (paths or {}).items():
        output = output.replace(real, shown)
    if varying is not None:
        output, expected = re.sub(varying, "...", output), re.sub(varying, "...", expected)
    assert output == expected


# -- the blocks --------------------------------------------------------------------------------


def test_the_pages_have_examples() -> None:
    assert {p.name for p in PAGES} >= {
        "index.md", "getting-started.md", "cli.md", "embedding.md", "configuration.md", "c-packages.md",
        "python-packages.md", "testing.md", "plugins.md", "abi.md", "performance.md", "scaling.md", "api.md",
        "development.md",
    }
    assert len(GENERIC) >= 10 and PACKAGE_FILES


def test_every_block_is_run_or_says_why_not() -> None:
    for marker, test in CHECKED.items():
        assert sum(marker in b.code for b in BLOCKS) == 1, f"{marker!r} must be in exactly one block"
        assert callable(globals().get(test)), test
    for b in BLOCKS:
        if b.not_run is not None:
            assert b.not_run, f"{b.id}: a not-run block must say why"
        elif b.language == "c":
            assert checked(b), f"{b.id}: no test compiles this C block"
    assert not any(b.not_run is not None and checked(b) for b in BLOCKS)
    for b in BLOCKS:
        if b.language == "python" and re.search(r"^if __name__ == .__main__.:", b.code, flags=re.M):
            assert checked(b), f"{b.id}: run as a module, this block would skip its __main__ part"


@pytest.mark.parametrize("example", GENERIC, ids=lambda b: b.id)
def test_python_example_runs(example: Block, package_dir: Path, tmp_path: Path,
                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    write_package_files(example.page, tmp_path)
    needs_extras(example)
    run(example, {"sc": sc, "package_dir": package_dir, "Path": Path})


@pytest.mark.parametrize("example", PACKAGE_FILES, ids=lambda b: b.id)
def test_package_file_is_a_working_package(example: Block, tmp_path: Path) -> None:
    write_package_files(example.page, tmp_path)
    name = Path(example.package_file).parts[1]
    done = subprocess.run([str(SPIDER), "packages", "--package-dir", "packages", "--json"], cwd=tmp_path,
                          env=spider_env(), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert f'"name": "{name}", "kind": "python"' in done.stdout and '"error": null' in done.stdout, done.stdout


def test_async_embedding(package_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                         capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    run(block("python", "async def main(package_dir"), {"package_dir": package_dir})
    assert "outputs: [55]" in capsys.readouterr().out
    assert (tmp_path / "logs" / "em-1-1.log").is_file()


def test_slots_submit_and_map(package_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run(block("python", "as_completed(futures)"), {"sc": sc, "package_dir": package_dir})
    lines = sorted(capsys.readouterr().out.splitlines(), key=lambda line: int(line.split()[0]))
    assert lines == [f"{n} [{f}]" for n, f in enumerate([0, 1, 1, 2, 3, 5, 8, 13, 21, 34])]


@pytest.mark.slow
def test_values_or_an_exception(package_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run(block("python", "except sc.ExecutorCrashed"), {"sc": sc, "package_dir": package_dir})
    lines = capsys.readouterr().out.splitlines()
    assert lines[:4] == [
        "the task did not finish within its hard timeout of 0.2s",
        "the executor crashed (signal SIGABRT)",
        "ExecutionError: always_fail: intentional failure",
        "no task no_such_task",
    ]
    assert lines[4].startswith("cannot load: no task package named 'no_such_package' in ")
    assert lines[5:] == ["[6765]"]


def test_metrics_plugin(package_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    plugin = types.ModuleType("spider_metrics")
    run(block("python", "# spider_metrics.py"), plugin.__dict__)
    pm = sc.get_plugin_manager(sc.PluginSettings(autoload=False))
    pm.register(plugin, name="metrics")
    config = sc.PoolConfig(package_dir=package_dir)
    request = sc.ExecuteRequest(package="integration_test_tasks", task="always_panic")
    with caplog.at_level("INFO", logger="spider_metrics"):
        with sc.SyncProcessPool(config, plugin_manager=pm) as pool:
            pool.execute(request, hard_timeout=5)
    messages = [r.getMessage() for r in caplog.records if r.name == "spider_metrics"]
    assert any(m.startswith("integration_test_tasks/always_panic: ExecutorCrash in") for m in messages)
    assert any("executor 1 exited (crash)" in m for m in messages)


def test_launcher_plugin(package_dir: Path) -> None:
    plugin = types.ModuleType("spider_nice")
    run(block("python", "# spider_nice.py"), plugin.__dict__)
    pm = sc.get_plugin_manager(sc.PluginSettings(autoload=False))
    pm.register(plugin, name="nice")
    request = sc.ExecuteRequest(package="integration_test_tasks", task="fibonacci", inputs=[10])
    with sc.SyncProcessPool(sc.PoolConfig(package_dir=package_dir), plugin_manager=pm) as pool:
        assert pool.execute(request, hard_timeout=5).values == [55]
        assert os.getpriority(os.PRIO_PROCESS, pool.pid) == min(19, os.getpriority(os.PRIO_PROCESS, 0) + 10)


def test_spawner_plugin(package_dir: Path) -> None:
    plugin = types.ModuleType("spider_pinned")
    run(block("python", "# spider_pinned.py"), plugin.__dict__)
    pm = sc.get_plugin_manager(sc.PluginSettings(autoload=False))
    pm.register(plugin, name="pinned")
    config = sc.PoolConfig(package_dir=package_dir, default_timeout=5)
    with sc.SyncProcessPool(config, plugin_manager=pm) as pool:
        first = pool.pid
        assert os.sched_getaffinity(first) == {0}
        with pytest.raises(sc.ExecutorCrashed) as info:
            pool.call("integration_test_tasks", "exit_with", 7)
        assert info.value.outcome.exit_status == 7
        assert pool.call("integration_test_tasks", "fibonacci", 10) == [55]
        assert pool.pid != first and os.sched_getaffinity(pool.pid) == {0}


def test_protocol_plugin(package_dir: Path) -> None:
    """The tiny spider-rust protocol of the plugin page drives the stand-in for spider's binary."""
    plugin = types.ModuleType("spider_tinyrust")
    run(block("python", "# spider_tinyrust.py"), plugin.__dict__)
    pm = sc.get_plugin_manager(sc.PluginSettings(autoload=False))
    pm.register(plugin, name="tinyrust")
    exits = []

    class Recorder:
        @sc.hookimpl
        def spider_executor_exited(self, reason, exit_status, signal):
            exits.append((reason, exit_status, signal))

    pm.register(Recorder(), name="recorder")
    standin = (sys.executable, str(REPO / "tests" / "rust_standin.py"))
    config = sc.PoolConfig(package_dir=package_dir, protocol="tiny-rust", executor_command=standin, default_timeout=5)
    with sc.SyncProcessPool(config, plugin_manager=pm) as pool:
        assert pool.call("integration_test_tasks", "fibonacci", 10) == [55]
        with pytest.raises(sc.TaskFailed):
            pool.call("integration_test_tasks", "always_fail")
        with pytest.raises(sc.ExecutorCrashed):
            pool.call("integration_test_tasks", "print_to_stdout")
        assert pool.call("integration_test_tasks", "sleep_and_echo", ["a"]) == [["a"]]
    assert exits[-1] == ("shutdown", 0, None)


def test_plugin_examples_import_only_the_plugin_api() -> None:
    imports = [
        name
        for b in page_blocks("plugins.md", "python")
        for name in re.findall(r"^(?:from|import) (\S+)", b.code, flags=re.M)
    ]
    assert imports and {i for i in imports if i.startswith("spider_core")} == {"spider_core.plugin"}


@pytest.mark.slow
def test_pytest_examples(pytester: pytest.Pytester) -> None:
    """The testing page's two test files, run by pytest in a project laid out as they expect."""
    files = {
        "task_packages/complex_number/__init__.py": (TASK_PACKAGES / "complex_number" / "__init__.py").read_text(),
        "task_packages/integration_test_tasks/integration_test_tasks.c":
            (TASK_PACKAGES / "integration_test_tasks" / "integration_test_tasks.c").read_text(),
        "tests/test_complex_number.py": block("python", "def test_add(spider_build_package").code,
        "tests/test_fibonacci.py": block("python", "def test_fibonacci(spider_build_package").code,
    }
    for path, text in files.items():
        (pytester.path / path).parent.mkdir(parents=True, exist_ok=True)
        (pytester.path / path).write_text(text)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--strict-markers", "-W",
                                           "error::pytest.PytestWarning", "tests")
    result.assert_outcomes(passed=3, warnings=0)  # an editable install of spider-core adds none either


def test_python_package_example(tmp_path: Path) -> None:
    """The page's package is the bundled one, and its transcript is what spider prints."""
    example = block("python", 'package = Package("complex_number")')
    assert example.code == (TASK_PACKAGES / "complex_number" / "__init__.py").read_text()
    shutil.copytree(TASK_PACKAGES / "complex_number", tmp_path / "task_packages" / "complex_number")
    transcript = block("console", "cp -r task_packages/complex_number packages/")
    replay(transcript, tmp_path, {str(tmp_path.resolve()): "/home/me", str(tmp_path): "/home/me"})


def test_first_task_transcript(tmp_path: Path) -> None:
    write_package_files("getting-started.md", tmp_path)
    assert (tmp_path / "packages" / "hello" / "__init__.py").is_file()
    replay(block("console", "hello greet '\"world\"'"), tmp_path)


def test_cli_page_run_transcript(package_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "packages").symlink_to(package_dir)
    replay(block("console", "integration_test_tasks no_such_task"), tmp_path,
           {str(tmp_path.resolve()): "/home/me", str(tmp_path): "/home/me"})


@pytest.mark.slow
def test_readme_runs_as_pasted(tmp_path: Path) -> None:
    """The README's tour, pasted into a shell after ``spider demo`` (in a fresh home directory,
    so the demo builds into ``~/.cache/spider-core``), and its Python example, run as a script
    in that shell: every command, the export line included, as written."""
    readme = parse(REPO / "README.md")
    (tour,) = [b for b in readme if b.language == "console" and "export SPIDER_TDL_PACKAGE_DIR=" in b.code]
    (example,) = [b for b in readme if b.language == "python"]
    env = {k: v for k, v in spider_env().items() if k != "XDG_CACHE_HOME"} | {"HOME": str(tmp_path)}
    demo = subprocess.run(["spider", "demo"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert demo.returncode == 0, demo.stderr
    export = next(line[2:] for line in tour.code.splitlines() if line.startswith("$ export "))
    assert export.split("#")[0].strip() in demo.stdout.replace(str(tmp_path), "~")  # the line the demo printed
    replay(tour, tmp_path, env=env, varying=r'"elapsed_us": \d+')
    (tmp_path / "example.py").write_text(example.code)
    done = subprocess.run(["bash", "-c", f"{export}\n{shlex.quote(sys.executable)} example.py"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert (done.stdout, done.stderr) == ("outputs: [55]\n", "")
    assert (tmp_path / "logs" / "em-1-1.log").is_file()


@pytest.mark.slow
def test_dask_example(package_dir: Path, tmp_path: Path) -> None:
    """The scaling page's LocalCluster example, run as the script a user saves it as: Dask's
    worker processes import that script again, and its ``__main__`` guard keeps them from
    starting clusters of their own."""
    example = block("python", "spider_core.dask.SpiderWorkerPlugin(config)")
    script = tmp_path / "dask_example.py"
    script.write_text(f"from pathlib import Path\n\npackage_dir = Path({str(package_dir)!r})\n\n{example.code}")
    done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "[[0], [1], [1], [2], [3], [5], [8], [13], [21], [34]]",
        "ExecutorCrash SIGSEGV",
        "[34]",
    ], done.stderr


@pytest.mark.slow
def test_c_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Build the page's package from Python, then replay the page's transcript (which builds it
    again with the CLI and runs it)."""
    source = tmp_path / "hello"
    source.mkdir()
    (source / "hello.c").write_text(block("c", "square(x: i64)").code)
    monkeypatch.chdir(tmp_path)
    run(block("python", 'sc.build_package("hello"'))
    done = subprocess.run([str(SPIDER), "run", "--package-dir", "packages", "hello", "square", "12"],
                          capture_output=True, text=True)
    assert (done.returncode, done.stdout) == (0, "[144]\n"), done.stderr
    replay(block("console", "spider build-package hello --out packages"), tmp_path)


def test_abi_declarations_have_the_documented_layout(tmp_path: Path) -> None:
    """docs/abi.md §1.2 compiles, and its structs have the sizes and offsets its comments give."""
    declarations = block("c", "typedef struct spider_tdl_version").code
    checks = [
        "sizeof(spider_tdl_version) == 12", "offsetof(spider_tdl_version, patch) == 8",
        "sizeof(spider_tdl_char_array) == 16", "offsetof(spider_tdl_char_array, length) == 8",
        "sizeof(spider_tdl_byte_array) == 16", "offsetof(spider_tdl_byte_array, length) == 8",
        "sizeof(spider_tdl_task_execution_result) == 24",
        "offsetof(spider_tdl_task_execution_result, pointer) == 8",
        "offsetof(spider_tdl_task_execution_result, length) == 16",
    ]
    source = tmp_path / "abi.c"
    source.write_text(
        "#include <stdbool.h>\n#include <stddef.h>\n#include <stdint.h>\n"
        + declarations
        + "".join(f'_Static_assert({check}, "{check}");\n' for check in checks)
    )
    done = subprocess.run([os.environ.get("CC") or "cc", "-std=c11", "-Wall", "-Werror", "-fsyntax-only", str(source)],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


# -- the references -----------------------------------------------------------------------------


def test_configuration_reference_lists_every_field() -> None:
    import attrs

    page = (DOCS / "configuration.md").read_text()
    assert ".. autoclass:: spider_core.PoolConfig\n" in page
    for field in attrs.fields(sc.PoolConfig):
        assert f":param {field.name}:" in sc.PoolConfig.__doc__, field.name


def test_dask_reference_lists_every_public_name() -> None:
    from spider_core import dask

    page = (DOCS / "api.md").read_text()
    assert ".. automodule:: spider_core.dask\n" in page
    for name in [*dask.__all__, "map"]:  # map is public, but kept out of __all__ (the builtin)
        assert re.search(rf"^\.\. auto\w+:: spider_core\.dask\.{name}\n", page, flags=re.M), name


def test_hook_reference_lists_every_hook() -> None:
    import inspect

    from spider_core.plugin import spec

    page = (DOCS / "plugins.md").read_text()
    hooks = [name for name, f in vars(spec).items() if callable(f) and hasattr(f, "spider_core_spec")]
    assert len(hooks) == 15
    for name in hooks:
        assert f".. autofunction:: spider_core.plugin.spec.{name}\n" in page, name
        assert f"| `{name}(" in page, f"{name} is missing from the hook table"
        doc = inspect.getdoc(getattr(spec, name))
        for parameter in inspect.signature(getattr(spec, name)).parameters:
            assert f":param {parameter}:" in doc, f"{name} does not document {parameter}"


def test_cli_page_covers_every_command_and_exit_status() -> None:
    import signal

    from spider_core.commands import build_parser, reporting
    from spider_core.commands.common import EXIT_STATUSES

    page = (DOCS / "cli.md").read_text()
    for code, name in [(0, "EXIT_OK"), (1, "EXIT_TASK_FAILURE"), (2, "EXIT_USAGE"), (3, "EXIT_TIMEOUT"),
                       (4, "EXIT_CRASH"), (5, "EXIT_INTERNAL")]:
        assert getattr(reporting, name) == code
        assert f"\n| {code} | " in page
    for signum in (signal.SIGHUP, signal.SIGINT, signal.SIGTERM):  # 128 + the signal that ended it
        assert f"\n| {128 + signum} | ended by {signum.name}" in page
        assert f"\n  {128 + signum}  ended by {signum.name}" in EXIT_STATUSES
    commands = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    assert commands.choices
    for command in commands.choices:
        assert f"```{{spider-help}} {command}\n" in page, command
        assert f"## spider {command}\n" in page, command


@pytest.mark.slow
def test_the_site_builds_without_warnings(tmp_path: Path) -> None:
    out = tmp_path / "html"
    done = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html", str(DOCS), str(out)],
        capture_output=True, text=True,
    )
    assert done.returncode == 0, done.stderr
    import attrs

    configuration = (out / "configuration.html").read_text()
    for field in attrs.fields(sc.PoolConfig):
        assert f"<strong>{field.name}</strong>" in configuration, field.name
    plugins = (out / "plugins.html").read_text()
    assert plugins.count('<dt class="sig sig-object py" id="spider_core.plugin.spec.spider_') == 15
    assert "usage: spider run [-h]" in (out / "cli.html").read_text()
    assert 'id="spider_core.dask.SpiderWorkerPlugin"' in (out / "api.html").read_text()
    assert (out / "abi.html").is_file()


def test_async_examples_run_their_coroutines() -> None:
    """An example that defines a coroutine also runs it, so running the block tests it."""
    for b in BLOCKS:
        if b.language == "python" and "async def " in b.code:
            assert "asyncio.run(" in b.code, b.id


def test_otel_setup(package_dir: Path) -> None:
    """The OpenTelemetry setup, in a fresh interpreter (a process sets its tracer provider
    once): the console exporter prints the task's span, a child of the caller's."""
    needs_extras(block("python", "trace.set_tracer_provider"))
    prelude = f"import spider_core as sc\npackage_dir = {str(package_dir)!r}\n"
    done = subprocess.run([sys.executable, "-c", prelude + block("python", "trace.set_tracer_provider").code],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    spans = [json.loads(text) for text in re.findall(r"^\{.*?^\}", done.stdout, flags=re.M | re.S)]
    named = {span["name"]: span for span in spans}
    assert sorted(named) == ["request", "spider.task"] and len(spans) == 2
    task, request = named["spider.task"], named["request"]
    assert task["parent_id"] == request["context"]["span_id"]
    assert task["attributes"]["spider.outcome"] == "success" and task["attributes"]["spider.task"] == "fibonacci"
