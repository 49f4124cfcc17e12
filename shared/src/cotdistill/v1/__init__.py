"""Generated gRPC code of protos/cotdistill/v1 (``make protos``; CI checks drift). Do not edit."""
