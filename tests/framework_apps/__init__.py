"""One app per framework, each with the same routes, for tests/test_frameworks_apps.py:
``/login?user=&role=``, ``/me``, ``/member`` (signed in), ``/admin`` (ADMIN),
``POST /big`` (data that needs chunks), ``POST /framework-signout`` (the framework's own
session API, where it has one), the session endpoints at ``/auth``, and where the
framework has websockets ``/ws`` and ``/ws-admin``."""

SECRET = "framework-apps-secret-0123456789abcdef"
