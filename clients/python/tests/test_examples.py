"""The files in examples/ run as written against a real Herald."""

import os
import subprocess
import sys
from pathlib import Path

from conftest import API_KEY, Herald

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def test_quickstart_prints_both_events(herald: Herald) -> None:
    env = dict(os.environ, EVENTS_ENDPOINT=herald.endpoint, EVENTS_API_KEY=API_KEY)
    out = subprocess.run(
        [sys.executable, str(EXAMPLES / "quickstart.py")],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert out.stdout.splitlines() == [
        "received {'hello': 'world'}",
        "received {'over': 'socket'}",
    ]
