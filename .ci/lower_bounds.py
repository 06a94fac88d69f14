"""Print a pip constraints file that pins every dependency of pyproject.toml (extras included) to its lower
bound, so CI can run the tests on the oldest versions the project claims to support (pip has no option to
resolve to the lowest versions). A dependency without a ``>=`` bound is an error: its oldest version is
unknown.

torch and torchvision are left unpinned: CI installs them from the machine's own disk, which holds one release.

    python3 .ci/lower_bounds.py [pyproject.toml] > constraints.txt
"""

import re
import sys
import tomllib
from pathlib import Path

UNPINNED = {"torch", "torchvision"}


def main() -> int:
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent.parent / "pyproject.toml"
    project = tomllib.loads(path.read_text())["project"]
    extras = project.get("optional-dependencies", {}).values()
    for requirement in [*project["dependencies"], *(r for extra in extras for r in extra)]:
        match = re.match(r"\s*([A-Za-z0-9_.-]+)\s*(?:\[[^\]]*\])?\s*([^;]*)", requirement)
        name, lower = match.group(1), re.search(r">=\s*([^,\s]+)", match.group(2))
        if lower is None:
            print(f"lower_bounds: {requirement!r} in {path} has no lower bound (>=)", file=sys.stderr)
            return 1
        if name.lower() not in UNPINNED:
            print(f"{name}=={lower.group(1)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
