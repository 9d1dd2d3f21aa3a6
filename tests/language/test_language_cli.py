"""`switchboard language classify | eval` run as real subprocesses."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.language.evaluation import BinaryScore, Example, Prediction, score

DATA = Path(__file__).parent / "data"
ROOT = Path(__file__).parents[2]
CATALOG = str(DATA / "acme_catalog.json")

pytestmark = pytest.mark.slow


def run(
    *args: str, stdin: str = "", env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli.language", *args],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=60,
        check=False,
    )


def test_classify_writes_one_line_per_input() -> None:
    """Each input line gets a route among the catalog's agents (or null) and both signals."""
    lines = [
        {"text": "Where is my parcel?"},
        {"text": "Thanks, that fixed it!"},
        {"text": "Get me a human NOW!!"},
    ]
    result = run("classify", "--catalog", CATALOG, stdin="\n".join(map(json.dumps, lines)))
    assert result.returncode == 0, result.stderr
    out = [json.loads(line) for line in result.stdout.splitlines()]
    assert out == [
        {"route": "orders@acme-audio.example", "wants_human": False, "frustrated": False},
        {"route": None, "wants_human": False, "frustrated": False},
        {"route": None, "wants_human": True, "frustrated": True},
    ]


@pytest.mark.parametrize(
    ("args", "stdin", "message"),
    [
        (("classify", "--catalog", CATALOG), "not json\n", "stdin line 1: not valid JSON"),
        (("classify", "--catalog", CATALOG), '{"txt": 1}\n', 'a "text" string'),
        (("classify", "--catalog", "/nonexistent.json"), "", "cannot read catalog"),
        (("eval", str(DATA / "acme_catalog.json"), "--catalog", CATALOG), "", "acme_catalog"),
        (("classify", "--catalog", CATALOG, "--language", "openai"), "", "needs --model"),
    ],
)
def test_bad_input_is_one_line_error(args: tuple[str, ...], stdin: str, message: str) -> None:
    """Bad input gives exit 2 and one error line on stderr, never a traceback."""
    result = run(*args, stdin=stdin)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_openai_takes_its_key_from_the_environment_variable_named() -> None:
    """`--language openai` reads the key from SWITCHBOARD_OPENAI_API_KEY, or from the variable
    `--api-key-env` names; without one it stops with one line naming the variable. With a key
    and a model server that refuses (a closed port), the rules answer."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]
    base = {k: v for k, v in os.environ.items() if not k.startswith("SWITCHBOARD_")}
    flags = ("classify", "--catalog", CATALOG, "--language", "openai", "--model", "m")
    flags += ("--base-url", f"http://127.0.0.1:{closed}/v1", "--timeout", "2")
    line = json.dumps({"text": "Where is my parcel?"})

    missing = run(*flags, stdin=line, env=base)
    assert missing.returncode == 2
    assert missing.stderr == (
        "switchboard: error: --language openai needs an API key in $SWITCHBOARD_OPENAI_API_KEY\n"
    )
    for variable, extra in (
        ("SWITCHBOARD_OPENAI_API_KEY", ()),
        ("MY_KEY", ("--api-key-env", "MY_KEY")),
    ):
        answered = run(*flags, *extra, stdin=line, env={**base, variable: "sk-test"})
        assert answered.returncode == 0, answered.stderr
        # the fallback's warnings come first (structlog's default prints them on stdout)
        answer = json.loads(answered.stdout.splitlines()[-1])
        assert answer["route"] == "orders@acme-audio.example"


def test_eval_prints_table_and_json() -> None:
    """`eval` prints route accuracy and P/R/F1 for both signals, as a table or as JSON."""
    path = str(DATA / "acme_holdout.jsonl")
    table = run("eval", path, "--catalog", CATALOG)
    assert table.returncode == 0, table.stderr
    for word in ("route accuracy", "wants_human", "frustrated", "precision", "recall", "f1"):
        assert word in table.stdout
    figures = json.loads(run("eval", path, "--catalog", CATALOG, "--json").stdout)
    assert figures["items"] == 64
    assert figures["route_accuracy"] >= 0.85
    assert figures["wants_human"]["precision"] >= 0.95


def test_score_arithmetic() -> None:
    """Route accuracy ignores unlabelled routes; P/R/F1 count hits, false alarms and misses."""
    examples = [
        Example("a", "x@b.example", True, False),
        Example("b", "y@b.example", False, True),
        Example("c", None, True, True),
        Example("d", None, False, False),
    ]
    predictions = [
        Prediction("x@b.example", True, True),
        Prediction("x@b.example", True, True),
        Prediction("z@b.example", False, False),
        Prediction(None, False, False),
    ]
    report = score(examples, predictions)
    assert (report.routed_items, report.route_correct) == (2, 1)
    assert report.wants_human == BinaryScore(1, 1, 1)
    assert report.frustrated == BinaryScore(1, 1, 1)
    assert report.wants_human.f1 == pytest.approx(0.5)
    assert BinaryScore(0, 0, 0).f1 == 1.0  # nothing to find, nothing claimed
