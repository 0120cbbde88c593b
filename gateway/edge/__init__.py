"""The daemon's edge toward whoever calls it: which address a request comes
from behind a proxy (`proxies`), which channel hooks are served and to whom
(`hooks`), and running out of file descriptors as a state to ride out
(`fdlimit`)."""
