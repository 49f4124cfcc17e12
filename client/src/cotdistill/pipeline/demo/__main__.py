"""Entry point of ``python -m cotdistill.pipeline.demo``."""

from cotdistill.pipeline.demo.runner import main

main()
