"""The Cloudflare-compatible Workflows API, under ``/client/v4/accounts/{account_id}``."""

from stepstone.api.cloudflare.router import install

__all__ = ["install"]
