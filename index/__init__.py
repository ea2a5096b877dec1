"""Hash index over binary codes and the durable document store."""
