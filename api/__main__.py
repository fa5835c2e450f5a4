"""`python -m api`: serve the API on SERVICE_HOST:SERVICE_PORT."""

from __future__ import annotations

import uvicorn

from api.app import create_app
from core.logs import configure_logging
from core.settings import ApiSettings
from services.base import load_service


def main() -> None:
    settings = ApiSettings()  # required values come from the env
    configure_logging(settings)
    app = create_app(settings, load_service(settings.service_module))
    uvicorn.run(
        app,
        host=settings.service_host,
        port=settings.service_port,
        log_config=None,
        access_log=settings.log_level == "debug",
    )


if __name__ == "__main__":
    main()
