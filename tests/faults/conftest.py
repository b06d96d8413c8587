from tests.e2e.conftest import make_server, py_command  # noqa: F401
