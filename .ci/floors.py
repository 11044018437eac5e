"""Print a pip constraints file that pins every dependency pyproject.toml declares to its floor.

`name>=X` becomes `name==X` (the lowest version we claim to support); exact pins stay as they are.
torch is the exception: it is pinned to the CPU build on this machine's disk (a lower torch would
be a multi-GB CUDA download), so the check covers the floors of everything around it.
A dependency with neither a floor nor a pin is an error: it claims every version that ever existed.
Used by .ci/lowest; `--check` then says whether the environment holds exactly those versions.
"""

import re
import sys
from pathlib import Path

import tomllib

TORCH = "torch==2.13.0"
SPEC = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(\[[^\]]*\])?\s*(.*)$")


def floors(pyproject: Path) -> list[str]:
    project = tomllib.loads(pyproject.read_text())["project"]
    requirements = list(project["dependencies"])
    for extra in project.get("optional-dependencies", {}).values():
        requirements += [r for r in extra if not r.startswith(project["name"])]
    pins = []
    for requirement in requirements:
        name, _, spec = SPEC.match(requirement.split(";")[0]).groups()
        if name.lower() == "torch":
            pins.append(TORCH)
            continue
        parts = {p.strip()[:2]: p.strip()[2:].strip() for p in spec.split(",") if p.strip()}
        low = parts.get("==") or parts.get(">=")
        if not low:
            sys.exit(f"{pyproject}: {requirement!r} has no lower bound (>=) or pin (==)")
        pins.append(f"{name}=={low}")
    return pins


def check(pins: list[str]) -> None:
    """Exit non-zero unless every pinned distribution is installed at its pinned version."""
    from importlib.metadata import PackageNotFoundError, version

    wrong = []
    for pin in pins:
        name, wanted = pin.split("==")
        try:
            have = version(name)
        except PackageNotFoundError:
            have = "missing"
        if have.split("+")[0] != wanted:
            wrong.append(f"{name} {have} (wanted {wanted})")
    print("at their floors: " + ", ".join(pin.replace("==", " ") for pin in pins))
    if wrong:
        sys.exit("not at their floors: " + ", ".join(wrong))


if __name__ == "__main__":
    args = sys.argv[1:]
    pins = floors(Path(next((a for a in args if not a.startswith("--")), "pyproject.toml")))
    if "--check" in args:
        check(pins)
    else:
        print("\n".join(pins))
