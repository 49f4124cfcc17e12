"""cotdistill common library: what every service and the pipeline CLI share.

Services import only ``cotdistill.common`` and ``cotdistill.v1``; this package never imports a
service (tests/unit/test_import_boundaries.py enforces both).
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("cotdistill-shared")
except PackageNotFoundError:  # running from a source tree without an install
    __version__ = "0.0.0"
