"""Training a program: the model on a device, the trainer's phases and steps, and what a step
needs around it (precision, several processes, averages, non-finite losses, health)."""
