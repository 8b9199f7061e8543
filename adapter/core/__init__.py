"""The request path: from a parsed metrics API request to values.

``request`` parses a URL into an :class:`~adapter.core.request.ApiRequest`; ``provider`` finds the
rule, asks which objects exist, builds the scoped query and fetches it through ``cache`` (TTL,
single-flight, prefetch) and ``resilience`` (circuit breaker); ``translate`` turns samples into the
API's objects and ``quantity`` formats them; ``registry`` holds the snapshot of served metrics;
``history`` records served values for the debug UI.

May import :mod:`adapter.rules`, :mod:`adapter.backends` (the ``Backend`` protocol),
:mod:`adapter.promql` and the layers below them; never HTTP serving or the Kubernetes client.
"""
