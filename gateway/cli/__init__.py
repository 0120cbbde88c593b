"""The `smsgw` command line."""
