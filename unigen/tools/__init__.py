"""Tools around the pipeline: drawings of a spec, pictures and curves of a run, generated docs,
starter specs."""
