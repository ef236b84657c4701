"""The node daemon front end: ``cgdev watch`` (an asyncio loop around ``ops.reconcile``) and its
metrics endpoint.  Imported only by ``cgdev watch``: asyncio, jeepney's asyncio side and
prometheus-client stay out of every other command."""
