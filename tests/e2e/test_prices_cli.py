"""`hpsteer prices parse` prints validated days as JSON, or one line of error and exit 1."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from hpsteer.runtime.cli import main

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "prices"
DE_LU = FIXTURES / "entsoe" / "entsoe_A44_DE-LU_2024-10-06_07_PT60M_PT15M.xml"
BE = FIXTURES / "entsoe" / "entsoe_A44_BE_2024-10-08_PT60M.xml"


def test_an_entsoe_document_prints_each_delivery_day_it_holds(capsys):
    assert main(["prices", "parse", "--source", "entsoe", str(DE_LU)]) == 0
    days = json.loads(capsys.readouterr().out)
    assert [(d["area"], d["market_date"], d["resolution_minutes"]) for d in days] == [
        ("DE-LU", "2024-10-06", 60),
        ("DE-LU", "2024-10-07", 60),
    ]
    first = days[0]["slots"]
    assert len(first) == 24
    assert first[0]["start_at"] == "2024-10-05T22:00:00Z"
    assert first[14]["price_eur_per_mwh"] == first[13]["price_eur_per_mwh"] == -0.01  # A03 fill


def test_the_area_can_be_given_and_must_match_the_document(capsys):
    assert main(["prices", "parse", "--source", "entsoe", "--area", "BE", str(BE)]) == 0
    assert json.loads(capsys.readouterr().out)[0]["market_date"] == "2024-10-08"
    assert main(["prices", "parse", "--source", "entsoe", "--area", "NL", str(BE)]) == 1
    assert capsys.readouterr().err.startswith("error: ")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "the file is empty"),
        (b"<html><body>Service unavailable</body></html>", "error: entsoe"),
        (DE_LU.read_bytes()[:2000], "error: entsoe"),
    ],
    ids=["empty", "html-page", "truncated"],
)
def test_a_bad_feed_exits_1_with_one_line_and_no_traceback(tmp_path, content, message):
    path = tmp_path / "feed.xml"
    path.write_bytes(content)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "hpsteer.runtime.cli",
            "prices",
            "parse",
            "--source",
            "entsoe",
            "--area",
            "DE-LU",
            str(path),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 1
    assert done.stdout == ""
    assert message in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert "Traceback" not in done.stderr


def test_energycharts_needs_an_area_because_its_body_names_none(tmp_path, capsys):
    path = tmp_path / "price.json"
    path.write_text('{"unix_seconds": [], "price": [], "unit": "EUR / MWh"}')
    assert main(["prices", "parse", "--source", "energycharts", str(path)]) == 1
    assert "pass --area" in capsys.readouterr().err


def test_a_missing_file_is_a_one_line_error(capsys):
    assert main(["prices", "parse", "--source", "entsoe", "/nonexistent/feed.xml"]) == 1
    assert (
        capsys.readouterr().err
        == "error: cannot read /nonexistent/feed.xml: No such file or directory\n"
    )
