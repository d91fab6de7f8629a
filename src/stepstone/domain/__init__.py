"""Pure domain: statuses, durations, retry policy, limits, records. Standard library only."""
