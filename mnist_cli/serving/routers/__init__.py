"""The server's routes, one module per concern; the app factory includes each router with one line."""
