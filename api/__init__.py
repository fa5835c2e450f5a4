"""The HTTP face of the service: the routes the Core engine calls."""
