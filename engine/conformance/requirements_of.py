"""Prints the requirements of an installed distribution for this platform, one a line,
with `+cpu` local versions (from an index no registry here mirrors) dropped.

Usage: python requirements_of.py DISTRIBUTION
"""

import sys
from importlib.metadata import requires

try:
    from packaging.requirements import Requirement
except ImportError:  # a fresh venv has only pip's vendored copy
    from pip._vendor.packaging.requirements import Requirement

for line in requires(sys.argv[1]) or []:
    req = Requirement(line)
    if req.marker is not None and not req.marker.evaluate({"extra": ""}):
        continue
    req.marker = None
    print(str(req).replace("+cpu", ""))
