"""Start the teacher service: ``python -m cotdistill.teacher`` or ``cotdistill serve teacher``."""

import asyncio

from cotdistill.common.logging import configure_logging
from cotdistill.teacher.server import run
from cotdistill.teacher.settings import TeacherSettings


def main() -> None:
    settings = TeacherSettings()
    configure_logging(settings.log_level, json_format=settings.log_json, service="teacher")
    asyncio.run(run(settings))


if __name__ == "__main__":
    main()
