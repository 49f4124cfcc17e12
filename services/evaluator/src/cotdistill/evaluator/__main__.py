"""Start the evaluator service: ``python -m cotdistill.evaluator`` or ``cotdistill serve evaluator``."""

import asyncio

from cotdistill.common.logging import configure_logging
from cotdistill.common.settings import load_settings_or_exit
from cotdistill.evaluator.server import run
from cotdistill.evaluator.settings import EvaluatorSettings


def main() -> None:
    settings = load_settings_or_exit(EvaluatorSettings, "evaluator")
    configure_logging(settings.log_level, json_format=settings.log_json, service="evaluator")
    asyncio.run(run(settings))


if __name__ == "__main__":
    main()
