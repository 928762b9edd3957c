"""LLM serving: a fast discrete-event simulator of continuous-batching replicas with measured kernel
latencies, and the ``LLMRouting-v0`` / ``LLMQueue-v0`` environments on it."""
