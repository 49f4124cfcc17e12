"""``python -m cotdistill.pipeline.repro`` (``make repro``)."""

from cotdistill.pipeline.repro.runner import main

if __name__ == "__main__":
    main()
