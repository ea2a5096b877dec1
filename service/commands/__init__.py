"""Sub-commands of the docbits CLI, one module each."""
