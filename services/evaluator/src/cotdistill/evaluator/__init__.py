"""cotdistill evaluator service: accuracy in and out of distribution, model selection, reports."""
