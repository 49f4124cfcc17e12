"""cotdistill trainer service: fine-tunes students with Ray Train (SFT and top-k distribution matching)."""
