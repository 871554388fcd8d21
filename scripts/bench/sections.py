#!/usr/bin/env python3
"""Writes one benchmark's generated section into docs/benchmarks.md between its two markers,
<!-- NAME:begin --> and <!-- NAME:end -->, and keeps the rest of the file as it is. Without
the markers yet, the section is appended at the end (below the data plane script's notes
marker, which that script keeps).

sections.py OUTPUT SECTION.md NAME
"""
import os
import sys


def merge(output, section_path, name):
    begin = f"<!-- {name}:begin -->"
    end = f"<!-- {name}:end -->"
    with open(section_path) as f:
        section = f.read().rstrip("\n") + "\n"
    block = f"{begin}\n{section}{end}\n"
    try:
        with open(output) as f:
            existing = f.read()
    except FileNotFoundError:
        existing = ""
    if existing.count(begin) != existing.count(end) or existing.count(begin) > 1:
        sys.exit(f"{output}: the {name} markers are unbalanced or repeated; fix them by hand")
    if begin in existing:
        head, rest = existing.split(begin, 1)
        tail = rest.split(end, 1)[1].lstrip("\n")
        updated = head + block + (("\n" + tail) if tail else "")
    else:
        updated = existing.rstrip("\n") + ("\n\n" if existing else "") + block
    # Written to a temporary file renamed over the output, so an interrupted run never leaves
    # half a document.
    tmp = f"{output}.{name}.tmp"
    with open(tmp, "w") as f:
        f.write(updated)
    os.replace(tmp, output)


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    merge(*sys.argv[1:4])
