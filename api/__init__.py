"""The Sanic API: the product's one front door."""
