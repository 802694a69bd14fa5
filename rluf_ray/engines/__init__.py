"""Sampling engines (hf, vllm) behind one interface, and the engine pool that runs them as Ray Data actors."""
