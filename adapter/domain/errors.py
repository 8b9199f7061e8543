"""The adapter's exceptions, one tree, rendered once as a ``metav1.Status``.

::

    AdapterError                      500 InternalError
    ├── BadRequestError               400 BadRequest     (malformed path, selector, query parameter)
    ├── NotFoundError                 404 NotFound       (unknown metric, object, namespace)
    ├── ForbiddenError                403 Forbidden
    ├── UnauthorizedError             401 Unauthorized
    ├── ConfigError                        (rules file or settings; never reaches a client)
    │   └── RuleError                      (names the file, the rule and the field)
    ├── QueryError                         (PromQL that cannot be parsed or scoped safely)
    ├── ObjectsUnavailableError       503 ServiceUnavailable (which objects exist is not known yet)
    └── BackendError                  503 ServiceUnavailable / 504 Timeout
        ├── BackendUnavailableError        (connection refused, DNS, TLS, 5xx, 429 after retries)
        ├── BackendTimeoutError       504  (deadline exceeded)
        └── BackendResponseError      502  (garbage: not JSON, wrong shape, error status)

Backends raise their own ``BackendError`` subclasses ``from`` the library exception; no ``httpx``
or ``grpc`` exception escapes a backend. Messages never contain credentials: backends build them
from the URL path and status, never from headers.
"""

from __future__ import annotations

__all__ = [
    "AdapterError",
    "BackendError",
    "BackendResponseError",
    "BackendTimeoutError",
    "BackendUnavailableError",
    "BadRequestError",
    "ConfigError",
    "ForbiddenError",
    "NotFoundError",
    "ObjectsUnavailableError",
    "QueryError",
    "RuleError",
    "UnauthorizedError",
]


class AdapterError(Exception):
    """Base of every error the adapter raises on purpose."""

    code: int = 500
    reason: str = "InternalError"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadRequestError(AdapterError):
    code = 400
    reason = "BadRequest"


class NotFoundError(AdapterError):
    code = 404
    reason = "NotFound"

    @classmethod
    def metric(cls, metric: str, where: str) -> NotFoundError:
        return cls(f"the server could not find the metric {metric} for {where}")


class ForbiddenError(AdapterError):
    code = 403
    reason = "Forbidden"


class UnauthorizedError(AdapterError):
    code = 401
    reason = "Unauthorized"


class ConfigError(AdapterError):
    """Settings or a rules file are invalid. Raised at start-up or reload, never on a request."""


class RuleError(ConfigError):
    """One rule is invalid: the message names the file, the rule and the field."""

    def __init__(self, message: str, *, file: str = "", rule: str = "", field: str = "") -> None:
        where = ", ".join(
            part
            for part in (
                file and f"file {file}",
                rule and f"rule {rule}",
                field and f"field {field}",
            )
            if part
        )
        super().__init__(f"{where}: {message}" if where else message)
        self.file = file
        self.rule = rule
        self.field = field


class QueryError(AdapterError):
    """A PromQL expression could not be parsed, rendered or scoped safely."""


class ObjectsUnavailableError(AdapterError):
    """Which objects exist is not known yet (the object source's first list is not in): answering
    without them would ignore the request's ``labelSelector``, so the request fails and the
    client retries."""

    code = 503
    reason = "ServiceUnavailable"


class BackendError(AdapterError):
    code = 503
    reason = "ServiceUnavailable"

    def __init__(self, message: str, *, backend: str = "backend") -> None:
        super().__init__(f"{backend}: {message}")
        self.backend = backend


class BackendUnavailableError(BackendError):
    pass


class BackendTimeoutError(BackendError):
    code = 504
    reason = "Timeout"


class BackendResponseError(BackendError):
    code = 502
    reason = "InternalError"
