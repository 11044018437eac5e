"""Print the README's set-up commands, each ended by a NUL byte: the fenced ```bash blocks under "## Set up".

.ci/run runs exactly these, so CI cannot drift from what a new user is told to type.
"""

import re
import sys
from pathlib import Path


def setup_commands(readme: Path) -> list[str]:
    text = readme.read_text(encoding="utf-8")
    section = re.search(r"^## Set up\n(.*?)(?=^## )", text, re.DOTALL | re.MULTILINE)
    if section is None:
        sys.exit(f"{readme}: no '## Set up' section")
    blocks = re.findall(r"^```bash\n(.*?)^```", section.group(1), re.DOTALL | re.MULTILINE)
    commands = [block.strip() for block in blocks]
    if len(commands) != 2 or not all(commands):
        sys.exit(f"{readme}: expected two set-up commands (one runs the tool, one the tests), found {len(commands)}")
    return commands


if __name__ == "__main__":
    for command in setup_commands(Path(sys.argv[1] if len(sys.argv) > 1 else "README.md")):
        sys.stdout.write(command + "\0")
