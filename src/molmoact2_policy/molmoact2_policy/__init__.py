"""MolmoAct2 policy side: camera ingestion, depth-change masking, VLA inference (real MolmoAct2 code), depth-token visualisation, recording and replay evaluation."""
