"""What plugins see and implement: hook specifications, the kinds they register, the registry
that loads them, and the contexts a term or a metric receives."""
