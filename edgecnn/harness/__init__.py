"""The harness: parity of every artifact against the original (check), latency (bench), and where int8 loses the signal (layers)."""
