"""Start the trainer service: ``python -m cotdistill.trainer`` or ``cotdistill serve trainer``."""

import asyncio

from cotdistill.common.logging import configure_logging
from cotdistill.trainer.server import run
from cotdistill.trainer.settings import TrainerSettings


def main() -> None:
    settings = TrainerSettings()
    configure_logging(settings.log_level, json_format=settings.log_json, service="trainer")
    asyncio.run(run(settings))


if __name__ == "__main__":
    main()
