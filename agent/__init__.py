"""The LiveKit Agents worker: Sarah of CME Auto Sales, wired to each call's Temporal workflow."""
