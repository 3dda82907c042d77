"""The household tariffs reach the deployed functions that read them: ``deploy.stage`` copies
``data/tariffs`` into the staged folder of every function whose code reaches ``hpsteer.tariffs``
(optimize plans on them, the API checks a device's tariff), and the staged package finds them
there with no environment variable set. The install test of ``test_staging.py`` then imports the
staged folder as deployed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from deploy.stage import DATA_DIR, StagedFunction, stage

TARIFFS = DATA_DIR / "tariffs"


@pytest.fixture(scope="module")
def staged(tmp_path_factory: pytest.TempPathFactory) -> dict[str, StagedFunction]:
    return {item.name: item for item in stage((), tmp_path_factory.mktemp("stage"))}


def _files(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and "__pycache__" not in p.parts
    }


def test_the_functions_that_reach_the_tariff_module_get_every_tariff_file_and_no_other_does(
    staged: dict[str, StagedFunction],
) -> None:
    with_tariffs = sorted(n for n, s in staged.items() if (s.path / "data" / "tariffs").exists())
    reaching = sorted(n for n, s in staged.items() if "hpsteer.tariffs" in s.modules)

    assert with_tariffs == reaching == ["api", "optimize"]
    for name in with_tariffs:
        assert _files(staged[name].path / "data" / "tariffs") == _files(TARIFFS), name
    assert not [n for n, s in staged.items() if (s.path / "data").exists() and n not in reaching]


@pytest.mark.parametrize("name", ["api", "optimize"])
def test_the_staged_package_reads_its_own_copy_of_the_tariffs_without_configuration(
    staged: dict[str, StagedFunction], name: str
) -> None:
    root = staged[name].path
    env = {k: v for k, v in os.environ.items() if not k.startswith("HPSTEER_")}
    env["PYTHONPATH"] = str(root)
    probe = (
        "import json, hpsteer, hpsteer.tariffs as t; "
        "print(json.dumps([hpsteer.__file__, str(t.default_directory()), "
        "t.load_tariff('dk1-n1').source_file, t.available_tariffs()]))"
    )

    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=root, env=env, capture_output=True, text=True, check=True
    )

    package, directory, source, known = json.loads(done.stdout)
    assert Path(package).is_relative_to(root)
    assert Path(directory) == root / "data" / "tariffs"
    assert source == "data/tariffs/dk1-n1.toml"
    assert known == sorted(p.stem for p in TARIFFS.glob("*.toml"))
