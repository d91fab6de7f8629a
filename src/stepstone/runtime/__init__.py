"""Durable execution: replay with memoization, suspension, retries, rollback."""
