"""cotdistill teacher service: samples rationales with per-token top-k logprobs."""
