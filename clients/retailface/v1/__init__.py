"""Generated gRPC code for retailface.v1 (scripts/gen_protos.py)."""
