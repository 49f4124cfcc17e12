"""Start the trainer service: ``python -m cotdistill.trainer`` or ``cotdistill serve trainer``."""

import asyncio

from cotdistill.common.logging import configure_logging
from cotdistill.common.settings import load_settings_or_exit
from cotdistill.trainer.server import run
from cotdistill.trainer.settings import TrainerSettings


def main() -> None:
    settings = load_settings_or_exit(TrainerSettings, "trainer")
    configure_logging(settings.log_level, json_format=settings.log_json, service="trainer")
    asyncio.run(run(settings))


if __name__ == "__main__":
    main()
