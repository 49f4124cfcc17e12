"""The scoring job (driver side): given rationales -> the teacher's top-k over their tokens, exactly once.

KD on rationales nobody sampled from this teacher: GSM8K's or Flan CoT's human rationales, imported
completions, or another teacher's samples. Each rationale is sent with the teacher's own prompt for
its question (through its chat template, as sampling sends it) to ``Score``; the teacher-forced
tokens and top-k land in sample shards of the usual schema, which ``filter`` and the trainer read
as any other samples. The job machinery (units, manifest, retries on other replicas, resume) is
the sampling job's (:class:`~cotdistill.pipeline.sampling.job.UnitJob`).

* :mod:`.units`: what is scored (:class:`ScoreRef`), the job's identity, its work units;
* :mod:`.sources`: gold rationales of a dataset, or the rationales of existing shards;
* :mod:`.job`: :class:`ScoringJob`, one ``Score`` call per unit;
* :mod:`.stage`: the ``score`` pipeline stage (recipe section ``scoring``).
"""
