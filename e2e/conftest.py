"""Fixtures for end-to-end tests: the real server in a subprocess and headless Chromium."""

import os
import shutil

import pytest

import widget_page
from server_process import ServerProcess

CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
    "--disable-component-update", "--no-first-run", "--disable-sync",
]


def chromium_path():
    for candidate in (os.environ.get("CHROMIUM_PATH"), "/usr/bin/chromium", shutil.which("chromium")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None  # Playwright's own browser (installed by scripts/ensure-chromium)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    """Keep each phase's report on the test item, so a fixture's teardown can tell whether the test passed."""
    report = yield
    setattr(item, "rep_" + report.when, report)
    return report


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    path = chromium_path()
    args = {**browser_type_launch_args, "args": CHROMIUM_ARGS}
    if path:
        args["executable_path"] = path
    return args


@pytest.fixture
def start_server():
    """Factory: start_server(*cli_args, env={}) -> a running ServerProcess, stopped after the test."""
    servers = []

    def start(*args, env=None, port=0):
        server = ServerProcess(*args, env=env, port=port).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def server(start_server):
    return start_server()


@pytest.fixture
def open_chat(page):
    """Load a page with the widget, open the panel, and wait until the widget is in ``state`` (connected).
    Returns the widget's frame (``widget_page.chat``); the host page stays the ``page`` fixture."""

    def open_(url, state="connected", timeout=10000):
        return widget_page.open_chat(page, url, state, timeout)

    return open_
