import pytest

from server.app import create_app
from server.config import Config

OWN_ORIGIN = "http://localhost"


@pytest.fixture
def make_app():
    def make(**settings):
        return create_app(Config(**{"store": "memory", **settings}))
    return make


@pytest.fixture
def app(make_app):
    return make_app(allow_origins=["https://shop.example.com", "https://*.example.org"])


@pytest.fixture
def client(app):
    return app.test_client()
