"""The compiler: a checked graph becomes a `Program`, with options resolved and terms bound."""
