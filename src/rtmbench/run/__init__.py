"""Running suites: checks (a unit of work -> a measurement), the runner (plan, resume, lock)
and the one entry point to a model with its weights (:func:`rtmbench.run.model.build`)."""
