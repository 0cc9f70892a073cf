"""The pure middle of the operator: resolve, place, render, diff and observe (no I/O here)."""
