"""Web requests from IIS and HttpProxy logs, in one shape, for the detectors that read URLs.

IIS W3C lines and HttpProxy rows describe the same requests with different column names. This
module gives both as one SQL relation: ``key, ts, host, log, method, uri, uri_decoded, status,
source_ip, user_agent, user, request_id, port``. ``uri`` is the path and query as logged (IIS
``cs-uri-stem`` ``?`` ``cs-uri-query``; HttpProxy ``UrlStem`` + ``UrlQuery``), ``uri_decoded``
its URL-decoded form (the ProxyNotShell URL rewrite mitigations were bypassed with encoded
characters, so patterns are matched on both), and user agents are given with IIS's ``+`` for
space turned back into spaces. The IIS request id is the ``cafeReqId`` Exchange appends to the
query, which equals the HttpProxy ``RequestId`` of the same request.
"""

from __future__ import annotations

from varde.events.store import EventStore

_IIS_FIELDS = ("cs-method", "cs-uri-stem", "cs-uri-query", "sc-status", "c-ip", "cs(User-Agent)", "cs-username",
               "s-port", "cs(Cookie)", "cs-uri-decoded")
_PROXY_FIELDS = ("Method", "UrlStem", "UrlQuery", "HttpStatus", "ClientIpAddress", "UserAgent", "AuthenticatedUser",
                 "RequestId", "UrlDecoded")


def _none(column: str) -> str:
    """SQL: the column, with the ``-`` that W3C logs write for nothing made NULL."""
    return f"nullif(nullif({column}, '-'), '')"


def requests(store: EventStore) -> str | None:
    """The table of every web request in the case (made once per state of the store), or None
    if there are none. ``uri_decoded`` is the reader's decoded URI (IIS ``cs-uri-decoded``,
    HttpProxy ``UrlDecoded``: decoded repeatedly, against double encoding), else decoded here."""
    parts = []
    iis = store.select("IIS", _IIS_FIELDS)
    if iis is not None:
        uri = f"""("cs-uri-stem" || coalesce('?' || {_none('"cs-uri-query"')}, ''))"""
        parts.append(f"""SELECT key, ts, host, 'iis' AS log, "cs-method" AS method, {uri} AS uri,
            "sc-status" AS status, {_none('"c-ip"')} AS source_ip,
            replace({_none('"cs(User-Agent)"')}, '+', ' ') AS user_agent, {_none('"cs-username"')} AS "user",
            nullif(regexp_extract("cs-uri-query", 'cafeReqId=([0-9a-fA-F-]+)', 1), '') AS request_id,
            "s-port" AS port, {_none('"cs(Cookie)"')} AS cookie, "cs-uri-decoded" AS decoded FROM {iis}""")
    proxy = store.select("Exchange HttpProxy", _PROXY_FIELDS)
    if proxy is not None:
        parts.append(f"""SELECT key, ts, host, 'httpproxy' AS log, Method AS method,
            (UrlStem || coalesce({_none('UrlQuery')}, '')) AS uri, HttpStatus AS status,
            {_none('ClientIpAddress')} AS source_ip, {_none('UserAgent')} AS user_agent,
            {_none('AuthenticatedUser')} AS "user", {_none('RequestId')} AS request_id, NULL AS port,
            NULL AS cookie, UrlDecoded AS decoded FROM {proxy}""")
    if not parts:
        return None
    union = " UNION ALL ".join(parts)
    decoded = "coalesce(decoded, try(url_decode(uri)), uri)"
    return store.materialise("web_requests", f"SELECT * EXCLUDE (decoded), {decoded} AS uri_decoded FROM ({union})")


#: Columns of :func:`requests` a detector passes on as hit attributes.
ATTRS = "key, source_ip, user_agent, \"user\", request_id, uri AS url, status"
