"""Every way into cco: the `cco` command line, the HTTP service and the terminal monitor."""
