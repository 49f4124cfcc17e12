"""Start the model server: ``python -m cotdistill.server`` or ``cotdistill serve server``."""

import uvicorn

from cotdistill.common.logging import configure_logging
from cotdistill.server.app import build_app
from cotdistill.server.lifecycle import GracefulServer
from cotdistill.server.settings import ServerSettings


def main() -> None:
    settings = ServerSettings()
    configure_logging(settings.log_level, json_format=settings.log_json, service="server")
    config = uvicorn.Config(
        build_app(settings),
        host=settings.host,
        port=settings.port,
        log_config=None,
        timeout_graceful_shutdown=int(settings.grace_period_s),
    )
    GracefulServer(config).run()


if __name__ == "__main__":
    main()
