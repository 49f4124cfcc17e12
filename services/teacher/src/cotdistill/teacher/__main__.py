"""Start the teacher service: ``python -m cotdistill.teacher`` or ``cotdistill serve teacher``."""

import asyncio
import sys

from cotdistill.common.errors import ConfigError
from cotdistill.common.logging import configure_logging
from cotdistill.teacher.server import run
from cotdistill.teacher.settings import TeacherSettings


def main() -> None:
    settings = TeacherSettings()
    configure_logging(settings.log_level, json_format=settings.log_json, service="teacher")
    try:
        asyncio.run(run(settings))
    except ConfigError as exc:  # a setting is missing or wrong: say which, no stack trace
        print(f"teacher: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
