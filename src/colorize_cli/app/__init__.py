"""The applications of the engine: batches of photos and films, evaluation, training, datasets,
publishing. They return results and raise errors; only the command line prints and exits."""
