"""A wheel built from the checkout works on its own: installed (not editable) into a fresh venv
and run from a directory outside the checkout, ``autoexec db upgrade`` migrates PostgreSQL and
``autoexec run`` runs an example on the embedded stack.

The fresh venv gets the dependencies without a download: a ``.pth`` file lists the dev venv's
site-packages as a plain path, so the dev venv's own ``.pth`` hooks (its editable install of
autoexec) are not processed and ``autoexec`` is imported from the wheel.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect

from autoexec.store.tables import Base

ROOT = Path(__file__).resolve().parents[2]
VERSIONS = sorted((ROOT / "autoexec" / "migrations" / "versions").glob("*.py"))
BUILD_TIMEOUT_SECONDS = 300
RUN_TIMEOUT_SECONDS = 120


@dataclass(frozen=True)
class FreshVenv:
    wheel: Path
    path: Path
    workdir: Path  # outside the checkout

    @property
    def python(self) -> Path:
        return self.path / "bin" / "python"

    def autoexec(self, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.path / "bin" / "autoexec"), *args],
            cwd=self.workdir,
            env={**clean_env(), **env},
            capture_output=True,
            text=True,
            timeout=RUN_TIMEOUT_SECONDS,
            check=False,
        )


def clean_env() -> dict[str, str]:
    """The environment without autoexec settings, nor a PYTHONPATH that could reach the checkout."""
    return {
        k: v for k, v in os.environ.items() if not k.startswith("AUTOEXEC_") and k != "PYTHONPATH"
    }


def run(command: list[str | Path], cwd: Path) -> str:
    done = subprocess.run(
        [str(part) for part in command],
        cwd=cwd,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT_SECONDS,
        check=False,
    )
    assert done.returncode == 0, f"{command} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def copy_sources(target: Path) -> Path:
    """What the wheel is built from, copied so that the build leaves nothing in the checkout."""
    shutil.copytree(
        ROOT / "autoexec", target / "autoexec", ignore=shutil.ignore_patterns("__pycache__")
    )
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, target / name)
    return target


def build_wheel(sources: Path, dist: Path) -> Path:
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", dist, sources], cwd=sources)
    (wheel,) = dist.glob("autoexec-*.whl")
    return wheel


def make_venv(path: Path, wheel: Path) -> None:
    run([sys.executable, "-m", "venv", "--without-pip", path], cwd=path.parent)
    python = path / "bin" / "python"
    run([sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", wheel], path)
    purelib = run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], path)
    dev_site_packages = sysconfig.get_paths()["purelib"]
    (Path(purelib.strip()) / "dev_dependencies.pth").write_text(f"{dev_site_packages}\n")


@pytest.fixture(scope="module")
def fresh_venv(tmp_path_factory: pytest.TempPathFactory) -> FreshVenv:
    base = tmp_path_factory.mktemp("install")
    wheel = build_wheel(copy_sources(base / "src"), base / "dist")
    make_venv(base / "venv", wheel)
    workdir = base / "work"
    workdir.mkdir()
    return FreshVenv(wheel, base / "venv", workdir)


def test_the_wheel_ships_the_migrations(fresh_venv: FreshVenv) -> None:
    with zipfile.ZipFile(fresh_venv.wheel) as wheel:
        names = set(wheel.namelist())
    migrations = ["env.py", "script.py.mako", *(f"versions/{p.name}" for p in VERSIONS)]
    assert {f"autoexec/migrations/{name}" for name in migrations} <= names


def test_autoexec_is_imported_from_the_wheel(fresh_venv: FreshVenv) -> None:
    command = [fresh_venv.python, "-c", "import autoexec; print(autoexec.__file__)"]
    printed = run(command, cwd=fresh_venv.workdir)
    assert Path(printed.strip()).is_relative_to(fresh_venv.path)


def test_db_upgrade_migrates_a_new_postgresql_database(
    fresh_venv: FreshVenv, new_pg_url: str
) -> None:
    done = fresh_venv.autoexec("db", "upgrade", env={"AUTOEXEC_DATABASE_URL": new_pg_url})
    assert done.returncode == 0, done.stderr
    assert done.stdout == "database is up to date\n"
    engine = create_engine(new_pg_url)
    try:
        tables = set(inspect(engine).get_table_names())
    finally:
        engine.dispose()
    assert tables == {*Base.metadata.tables, "alembic_version"}


def test_run_on_the_embedded_stack_prints_the_outputs(fresh_venv: FreshVenv) -> None:
    shutil.copy2(ROOT / "examples" / "hello.json", fresh_venv.workdir / "hello.json")
    home = fresh_venv.workdir / "home"
    done = fresh_venv.autoexec(
        "run", "hello.json", "--input", "x=1", env={"AUTOEXEC_HOME": str(home)}
    )
    assert done.returncode == 0, done.stderr
    outputs = {"sum": [2], "message": ["Hello! 1 + 1 = 2"]}
    assert done.stdout == f"status: COMPLETED\n{json.dumps(outputs, indent=2)}\n"
    assert (home / "embedded.sqlite3").is_file()
