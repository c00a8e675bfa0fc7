"""The application factory."""

import logging

from quart import Quart
from quart_cors import cors

from . import assets, health, socket
from .config import Config
from .consultant import HelpDeskConsultant
from .hub import Hub
from .origins import OriginPolicy


def create_app(config=None):
    """Build the chat server app from a ``Config`` (defaults when None)."""
    config = config or Config()
    app = Quart(__name__)
    policy = OriginPolicy(config.allow_origins, allow_missing=config.allow_missing_origin)
    app.extensions["chat_config"] = config
    app.extensions["chat_origins"] = policy
    app.extensions["chat_hub"] = Hub(config.max_connections)
    app.extensions["chat_consultant"] = HelpDeskConsultant()

    app.register_blueprint(health.bp)
    app.register_blueprint(assets.bp)
    app.register_blueprint(socket.bp)
    # CORS headers for the allowed origins on HTTP routes. The socket is exempt: it checks Origin
    # itself (exact match, 403 before upgrade) where quart-cors would answer 400 and match by prefix.
    # quart-cors matches regexes with re.match (a prefix), so the patterns from our rules are anchored.
    cors(app, allow_origin=[rule.cors_pattern() for rule in policy.rules],
         allow_methods=["GET"], allow_credentials=False)

    @app.after_serving
    async def stop_accepting():
        app.extensions["chat_hub"].draining = True

    logging.getLogger("chat_widget").setLevel(config.log_level.upper())
    return app
