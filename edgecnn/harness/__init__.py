"""The harness: parity (check), latency (bench) and merged reports."""
