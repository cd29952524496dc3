"""The in-memory stores (tests, local runs; refused inside Lambda): each is its DynamoDB store
on dict items (``table.MemoryTable``), so both run the same writes and conditions."""
