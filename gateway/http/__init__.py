"""HTTP: aiohttp handlers, one module per resource, and the error mapping."""
