"""Which MLflow tracking and registry URIs a setting may hold.

MLflow takes any text without a scheme for a local folder, so a mistyped value
(``garbage-uri``) becomes a file store in the working directory and fails later with a
message about that store. A URI here must say what it is: one of the forms below.
"""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlparse

from pydantic import AfterValidator

#: Shown in the error: the forms a tracking URI may take.
ALLOWED_FORMS = (
    "sqlite:///FILE.db, file:/PATH, http(s)://HOST[:PORT], postgresql://..., mysql://..., "
    "mssql://..., databricks[://PROFILE], databricks-uc"
)
_DATABASE_SCHEMES = frozenset({"sqlite", "postgresql", "mysql", "mssql"})
_NAMED = ("databricks", "databricks-uc", "uc")


def _is_allowed(uri: str) -> bool:
    if uri in _NAMED or uri.startswith(tuple(f"{name}://" for name in _NAMED)):
        return True
    parsed = urlparse(uri)
    scheme = parsed.scheme.split("+", 1)[0]  # postgresql+psycopg2://...
    if scheme in ("http", "https"):
        return bool(parsed.netloc)
    if scheme == "file":
        return bool(parsed.path)
    if scheme == "sqlite":
        return uri.startswith("sqlite:///") and len(uri) > len("sqlite:///")
    return scheme in _DATABASE_SCHEMES and bool(parsed.netloc or parsed.path)


def check_tracking_uri(uri: str | None) -> str | None:
    """Return ``uri`` if it has one of ``ALLOWED_FORMS``; raise ``ValueError`` otherwise."""
    if uri is None or _is_allowed(uri.strip()):
        return uri
    raise ValueError(f"not a tracking URI; the forms allowed: {ALLOWED_FORMS}")


#: A tracking or registry URI setting, checked when the settings are read.
TrackingUri = Annotated[str, AfterValidator(check_tracking_uri)]
