"""The README's two set-up commands are what a new user runs; CI must run the same test command."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    cmd = re.search(r"TEST_CMD='([^']+)'", ci).group(1)
    assert f"```bash\n{cmd}\n```" in readme


def test_readme_example_command_is_the_one_shown():
    readme = (ROOT / "README.md").read_text()
    assert ".venv/bin/budgetopt sweep --example h100-cluster\n```" in readme
