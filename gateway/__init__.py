"""The public HTTP gateway (FastAPI): the route catalogue, token and policy checks, gRPC calls."""
