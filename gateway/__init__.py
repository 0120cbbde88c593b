"""smsgw: the daemon, its HTTP API and its command line."""
