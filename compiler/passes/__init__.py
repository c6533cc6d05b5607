"""One pass per module; each is a function (graph, hw) -> graph."""
