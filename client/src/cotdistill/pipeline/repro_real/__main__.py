from cotdistill.pipeline.repro_real.runner import main

main()
