"""`seqserve loadtest`: a gRPC load generator for a running seqserve server.

It is a pure client: it speaks the wire protocols (seqserve.v1, optionally KServe V2) and reads the
server's /metrics page, and imports nothing from serving/ or training/, so it measures the server
exactly as any other client would see it.
"""
