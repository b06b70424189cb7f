"""The framework contract's app on Django under ASGI (see tests/test_frameworks_apps.py)."""

from __future__ import annotations

import json

from django.conf import settings

# Django's settings are the process's: configured once. The app is served by a uvicorn
# process of its own, where these are the settings; a test process that imported another
# Django app first only reads this module's constants.
if not settings.configured:
    settings.configure(
        DEBUG=False, SECRET_KEY="django's-own-secret-for-its-own-use", ROOT_URLCONF=__name__,
        ALLOWED_HOSTS=["127.0.0.1", "localhost"],
        MIDDLEWARE=["django.middleware.csrf.CsrfViewMiddleware",
                    "asgi_jwt_session.integrations.django.AuthErrorMiddleware"],
    )

from django.http import HttpRequest, JsonResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt

from asgi_jwt_session import auth, login, logout, require_role
from asgi_jwt_session.integrations.django import (
    asgi_application,
    requires_login,
    requires_role,
    session,
)
from tests.framework_apps import SECRET

COOKIE = "session"
CSRF_COOKIE = "jwt_csrftoken"
WEBSOCKETS = False


def sign_in(request: HttpRequest) -> JsonResponse:
    login(request, request.GET["user"], request.GET.get("role", "USER"))
    return JsonResponse({"user": request.GET["user"]})


async def me(request: HttpRequest) -> JsonResponse:
    found = auth(request)
    return JsonResponse({"user": found.user.id if found else None,
                         "data": dict(session(request))})


@requires_login
async def member(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"user": session(request).user.id})  # type: ignore[union-attr]


@requires_role("ADMIN")
def admin_sync(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"admin": session(request).user.id})  # type: ignore[union-attr]


def admin(request: HttpRequest) -> JsonResponse:
    user = require_role(request, "ADMIN")  # answered by AuthErrorMiddleware when not met
    return JsonResponse({"admin": user.id})


@csrf_exempt
def big(request: HttpRequest) -> JsonResponse:
    blob = json.loads(request.body)["blob"]
    session(request)["blob"] = blob
    return JsonResponse({"size": len(blob)})


@csrf_exempt
def framework_signout(request: HttpRequest) -> JsonResponse:
    logout(request)
    return JsonResponse({"session": None})


urlpatterns = [
    path("login", sign_in), path("me", me), path("member", member), path("admin", admin),
    path("big", big), path("framework-signout", framework_signout),
    path("admin-sync", admin_sync),
]

app = asgi_application(secret_key=SECRET)
