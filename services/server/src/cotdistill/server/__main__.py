"""Start the model server: ``python -m cotdistill.server`` or ``cotdistill serve server``."""

import logging
import sys

import uvicorn

from cotdistill.common.logging import configure_logging
from cotdistill.common.settings import load_settings_or_exit
from cotdistill.server.app import build_app
from cotdistill.server.lifecycle import GracefulServer
from cotdistill.server.settings import ServerSettings


def main() -> None:
    settings = load_settings_or_exit(ServerSettings, "server")
    configure_logging(settings.log_level, json_format=settings.log_json, service="server")
    app = build_app(settings)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,
        timeout_graceful_shutdown=int(settings.grace_period_s),
    )
    server = GracefulServer(config)
    failure: list[str] = []

    def on_fatal(why: str) -> None:  # the configured model cannot load: exit non-zero, visibly
        logging.getLogger("cotdistill.server").critical("%s; shutting down", why)
        failure.append(why)
        server.should_exit = True

    app.state.on_fatal = on_fatal
    server.run()
    if failure:
        sys.exit(1)


if __name__ == "__main__":
    main()
