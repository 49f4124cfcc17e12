"""Start the teacher service: ``python -m cotdistill.teacher`` or ``cotdistill serve teacher``."""

import asyncio

from cotdistill.common.errors import ConfigError
from cotdistill.common.logging import configure_logging
from cotdistill.common.settings import exit_config_error, load_settings_or_exit
from cotdistill.teacher.server import run
from cotdistill.teacher.settings import TeacherSettings


def main() -> None:
    settings = load_settings_or_exit(TeacherSettings, "teacher")
    configure_logging(settings.log_level, json_format=settings.log_json, service="teacher")
    try:
        asyncio.run(run(settings))
    except ConfigError as exc:  # a setting is missing or wrong: say which, no stack trace
        exit_config_error("teacher", exc)


if __name__ == "__main__":
    main()
