"""In-memory stores for tests and the local stack: one module per store, like adapters/dynamodb/."""
