"""Entry point: `uvicorn proxy_service.main:app`. Invalid settings stop here with one line."""

import sys

from proxy_service.app import create_app
from proxy_service.hot_routes import HotRoutes
from shared.settings import get_settings

try:
    app = HotRoutes(create_app(get_settings()))
except ValueError as error:  # a setting only the proxy interprets, e.g. MODEL_MAP
    print(f"invalid configuration: {error}", file=sys.stderr)
    raise SystemExit(2) from None
