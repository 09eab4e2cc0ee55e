"""Which AWS failures mean "your credentials do not work here" rather than "the cloud failed":
missing or partial credentials, an expired session, an unknown key, a signature or permission
refused. Those are the operator's to fix before anything runs (exit 2), not a step to retry or
compensate."""
from __future__ import annotations

AUTH_ERROR_CODES = frozenset({
    "UnrecognizedClientException", "InvalidClientTokenId", "InvalidAccessKeyId", "ExpiredToken",
    "ExpiredTokenException", "RequestExpired", "InvalidSignatureException", "SignatureDoesNotMatch",
    "IncompleteSignature", "MissingAuthenticationToken", "MissingAuthenticationTokenException",
    "AuthFailure", "AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "NotAuthorized",
})

FIX = ("configure credentials for the environment's AWS account (AWS_PROFILE, `aws sso login`, or "
       "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY) and run the command again")


def credentials_problem(exc: BaseException) -> str | None:
    """A one-line reason when `exc` is a credentials or permission failure, else None."""
    from botocore import exceptions as boto

    if isinstance(exc, boto.NoCredentialsError):
        return "no AWS credentials found"
    if isinstance(exc, boto.PartialCredentialsError):
        return f"incomplete AWS credentials ({exc})"
    if isinstance(exc, (boto.CredentialRetrievalError, boto.TokenRetrievalError, boto.SSOError,
                        boto.UnauthorizedSSOTokenError)):
        return f"AWS credentials could not be loaded ({exc})"
    if isinstance(exc, boto.ClientError):
        error = exc.response.get("Error", {})
        if error.get("Code") in AUTH_ERROR_CODES:
            message = str(error.get("Message") or "").strip()
            return f"AWS refused the credentials: {error['Code']}" + (f" ({message})" if message else "")
    return None
