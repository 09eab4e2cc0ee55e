"""The Google Cloud clients that the DR runbooks and `mlfleet drift` share.

GKE and Compute go through their client libraries (google-cloud-container,
google-cloud-compute) over REST. Cloud SQL has no maintained Python admin client library, so
its calls (and the Database Migration and Cloud Storage reads) are authenticated REST through
google-auth's AuthorizedSession. Every client points at Google's endpoints, or at one endpoint
(the sandbox's fake) when one is given.
"""
from __future__ import annotations

from dataclasses import dataclass, field

SQL_ADMIN = "https://sqladmin.googleapis.com"
DATABASE_MIGRATION = "https://datamigration.googleapis.com"
# The callers retry (and know what not to retry); the libraries' own retries would hide a
# region's 503s for their whole default deadline.
NO_LIBRARY_RETRY = {"retry": None, "timeout": 30.0}


@dataclass
class GcpClients:
    endpoint: str | None = None
    """None for Google's endpoints; the fake's URL in the sandbox."""
    credentials: object | None = None
    _session: object | None = field(default=None, repr=False)

    def _options(self):
        from google.api_core.client_options import ClientOptions

        return ClientOptions(api_endpoint=self.endpoint) if self.endpoint else None

    def _credentials(self):
        if self.credentials is not None:
            return self.credentials
        if self.endpoint:
            from google.auth.credentials import AnonymousCredentials

            return AnonymousCredentials()
        import google.auth

        return google.auth.default(scopes=["https://www.googleapis.com/auth/cloud-platform"])[0]

    def container(self):
        from google.cloud import container_v1

        return container_v1.ClusterManagerClient(credentials=self._credentials(), transport="rest",
                                                 client_options=self._options())

    def backend_services(self):
        from google.cloud import compute_v1

        return compute_v1.RegionBackendServicesClient(credentials=self._credentials(), transport="rest",
                                                      client_options=self._options())

    def sql_session(self):
        """One session for the REST calls, so credentials are fetched once."""
        if self._session is None:
            from google.auth.transport.requests import AuthorizedSession

            self._session = AuthorizedSession(self._credentials())
        return self._session

    @property
    def sql_base(self) -> str:
        return self.endpoint or SQL_ADMIN

    @property
    def dms_base(self) -> str:
        return self.endpoint or DATABASE_MIGRATION


def node_pool_path(project: str, location: str, cluster: str, pool: str) -> str:
    return f"projects/{project}/locations/{location}/clusters/{cluster}/nodePools/{pool}"


class HttpError(Exception):
    def __init__(self, status_code: int, text: str):
        self.status_code = status_code
        super().__init__(f"HTTP {status_code}: {text[:200]}")


def rest(clients: GcpClients, method: str, url: str, body: dict | None = None) -> dict:
    """One authenticated REST call (Cloud SQL Admin, Database Migration, Cloud Storage): a 4xx or 5xx raises."""
    response = clients.sql_session().request(method, url, json=body, timeout=30)
    if response.status_code >= 400:
        raise HttpError(response.status_code, response.text)
    return response.json()


def get_or_none(clients: GcpClients, url: str) -> dict | None:
    """A Google REST resource, or None when it does not exist."""
    try:
        return rest(clients, "GET", url)
    except HttpError as error:
        if error.status_code == 404:
            return None
        raise
