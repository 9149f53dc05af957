"""The MLOps loop's model registry: model cards (what a trained model is, what it scored, what
it was trained on, its stage and the decision that put it there), the promotion rules (a pure
decision: promote a candidate to production or keep the current one, with a reason a person can
read), one registry interface over the lake (``models/<name>/<version>/``) and over Azure ML's
model registry, and the staleness check (production models older than the age limit)."""
