"""One small module per framework, the shape :mod:`asgi_jwt_session.dependencies` is for
FastAPI: install the middleware, answer the guards' errors through the framework's own
mechanism, reach the session from the framework's request, mount the session endpoints.

- :mod:`asgi_jwt_session.integrations.litestar`: a Litestar plugin.
- :mod:`asgi_jwt_session.integrations.quart`: Quart.
- :mod:`asgi_jwt_session.integrations.django`: Django under ASGI.
- :mod:`asgi_jwt_session.integrations.falcon`: Falcon's ASGI app.
- :mod:`asgi_jwt_session.integrations.blacksheep`: BlackSheep.

Each imports its own framework only (the extra of the same name); this package imports
none of them.
"""
