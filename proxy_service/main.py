"""Entry point: `uvicorn proxy_service.main:app`. Invalid settings stop here with one line."""

from proxy_service.app import create_app
from shared.settings import get_settings

app = create_app(get_settings())
