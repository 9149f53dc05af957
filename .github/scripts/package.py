"""Build the deployment package: a zip of the app's folder without what .funcignore names.

The same files azd and Core Tools ship. Dependencies are not vendored: Flex Consumption builds
them from requirements.txt on deployment (remote build).

    python .github/scripts/package.py --output dist/forecastops.zip
"""

from __future__ import annotations

import argparse
import fnmatch
import os
import sys
import zipfile
from pathlib import Path


def read_ignore(path: Path) -> list[str]:
    """The patterns of a .funcignore (gitignore syntax without negation)."""
    patterns = []
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("!"):
            raise SystemExit(f"{path}: negated patterns are not supported: {line}")
        patterns.append(line)
    return patterns


def ignored(relative: str, patterns: list[str]) -> bool:
    """True when a path (POSIX, relative to the app's folder) matches a pattern: a pattern with
    a slash inside matches from the folder's root, one without matches any path segment."""
    parts = relative.split("/")
    for raw in patterns:
        pattern = raw.rstrip("/")
        if "/" in pattern:
            anchored = pattern.lstrip("/")
            if any(fnmatch.fnmatchcase("/".join(parts[: i + 1]), anchored) for i in range(len(parts))):
                return True
        elif any(fnmatch.fnmatchcase(part, pattern) for part in parts):
            return True
    return False


def package_files(root: Path) -> list[str]:
    ignore_file = root / ".funcignore"
    patterns = read_ignore(ignore_file) if ignore_file.exists() else []
    files = []
    for folder, dirs, names in os.walk(root):
        rel_folder = Path(folder).relative_to(root).as_posix()
        prefix = "" if rel_folder == "." else f"{rel_folder}/"
        dirs[:] = sorted(d for d in dirs if d != ".git" and not ignored(prefix + d, patterns))
        files.extend(prefix + n for n in sorted(names) if not ignored(prefix + n, patterns))
    return files


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path("."), help="the app's folder (default: here)")
    parser.add_argument("--output", type=Path, required=True, help="the zip to write")
    args = parser.parse_args(argv)
    root = args.root.resolve()
    output = args.output.resolve()
    files = [f for f in package_files(root) if (root / f).resolve() != output]
    for required in ("function_app.py", "host.json", "requirements.txt"):
        if required not in files:
            raise SystemExit(f"{required} is missing from the package: check .funcignore")
    output.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(output, "w", zipfile.ZIP_DEFLATED) as zf:
        for f in files:
            zf.write(root / f, f)
    print(f"{output}: {len(files)} files")
    return 0


if __name__ == "__main__":
    sys.exit(main())
