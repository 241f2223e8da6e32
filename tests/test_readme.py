"""The README a newcomer reads first: its opening, its two commands, and that what it points to exists."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def test_readme_opens_with_the_title_a_three_line_pitch_and_exactly_two_commands():
    lines = README.splitlines()
    assert lines[0].startswith("# ") and "asls" in lines[0]
    pitch = lines[1:lines.index("```bash")]
    assert [ln for ln in pitch if ln.strip()] == pitch[1:4] and len([ln for ln in pitch if ln.strip()]) == 3, pitch
    assert not any(ln.startswith(("#", "```", "-", "|")) for ln in pitch)
    start = lines.index("```bash") + 1
    commands = lines[start:lines.index("```", start)]
    assert len(commands) == 2, commands
    install_and_chat, tests = commands
    assert install_and_chat.startswith("pip install") and install_and_chat.endswith("asls chat")
    assert '".[test]"' in tests and tests.endswith("python -m pytest -q")


def _local_targets(path: Path) -> list[str]:
    text = path.read_text()
    links = re.findall(r"\]\(([^)#\s]+)\)", text)
    code_paths = re.findall(r"`((?:docs|benchmarks|notebooks|asls_mlx|tests|\.ci)/[\w./-]+)`", text)
    return [t for t in links + code_paths if not re.match(r"[a-z]+://", t)]


def test_every_file_the_documentation_points_to_is_in_the_repository():
    missing = []
    for doc in DOCS:
        targets = _local_targets(doc)
        assert doc.name != "README.md" or len(targets) >= 8, targets  # the check sees the README's links
        for target in targets:
            if not ((doc.parent / target).exists() or (ROOT / target).exists()):
                missing.append(f"{doc.relative_to(ROOT)}: {target}")
    assert not missing, missing


def test_the_sample_session_is_a_recorded_chat_image():
    svg = (ROOT / "docs" / "sample-session.svg").read_text()
    assert "docs/sample-session.svg" in README
    assert svg.lstrip().startswith("<svg") and "rich-terminal" in svg  # rich's SVG export
    assert "asls&#160;chat" in svg or "asls chat" in svg
    assert "you&gt;" in svg  # the user's typed lines are in it


def test_license_file_matches_the_declared_license():
    declared = re.search(r'^license\s*=\s*\{\s*text\s*=\s*"([^"]+)"', (ROOT / "pyproject.toml").read_text(), re.M)
    assert declared and declared.group(1) == "Apache-2.0"
    text = (ROOT / "LICENSE").read_text()
    assert "Apache License" in text and "Version 2.0, January 2004" in text and "END OF TERMS AND CONDITIONS" in text


def test_ci_installs_no_system_package():
    ci = (ROOT / ".ci" / "run").read_text()
    code = "\n".join(ln for ln in ci.splitlines() if not ln.lstrip().startswith("#"))
    assert not re.search(r"\b(apt-get|apt|yum|dnf|apk|zypper|brew)\s+(-\S+\s+)*install\b", code), code
    assert "pip install" in code
