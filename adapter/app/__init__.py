"""The application, whatever serves it: :class:`~adapter.app.context.AppContext` holds what the
routes and the commands use (settings, rules, backends, provider, registry, telemetry, history,
the object source and the HPA reader) and closes all of it with one ``aclose()``.

Sits between HTTP (:mod:`adapter.api`, :mod:`adapter.serving`) and the feature and request layers
(:mod:`adapter.hpa`, :mod:`adapter.core`); knows nothing about HTTP or the Kubernetes client.
"""
