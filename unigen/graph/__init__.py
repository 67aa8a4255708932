"""The model graph of a spec and the rules that check it."""
