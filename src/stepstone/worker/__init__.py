"""Workers: claim ready instances, drive them, renew leases, wake timers."""
