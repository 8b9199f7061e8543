"""The benchmark harness: llm-metrics-adapter and prometheus-adapter side by side (make bench)."""
